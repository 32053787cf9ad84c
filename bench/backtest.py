"""Backtest speed: SMA(50/200) crossover over 1,000,000 bars, algotrade against backtrader.

Both run on the same bars in the same process, one after the other, best of a few runs:
algotrade's :func:`algotrade.backtest` (the live processor's pipeline and strategy object,
paper trades, equity curve and figures) and backtrader's ``SMA`` + ``CrossOver`` in a
``Strategy`` (its default ``runonce`` mode, no trades). The crossover bars of both must be
identical.
"""

from __future__ import annotations

import time
from typing import Any

from algotrade import BarClosed, SmaCrossover, backtest
from algotrade.apps.backtesting import synthetic_history
from algotrade.services.backtesting import History

SHORT, LONG = 50, 200


def ours(history: History, repeats: int) -> tuple[float, list[tuple[int, int]]]:
    """Return the best seconds of a full backtest and its crossovers (bar index, +1/-1)."""
    best = float("inf")
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = backtest(SmaCrossover(SHORT, LONG), history)
        best = min(best, time.perf_counter() - started)
    assert result is not None
    index = {b.open_time: i for i, b in enumerate(_bars(history))}
    return best, [(index[s.bar_time], 1 if s.side == "BUY" else -1) for s in result.signals]


def theirs(history: History, repeats: int) -> tuple[float, list[tuple[int, int]]]:
    """Return backtrader's best seconds and crossovers over the same closes."""
    import backtrader as bt

    closes = [float(b.close) for b in _bars(history)]
    frame = _frame(history)

    class Cross(bt.Strategy):  # type: ignore[misc]  # backtrader has no type hints
        def __init__(self) -> None:
            fast = bt.indicators.SMA(self.data.close, period=SHORT)
            slow = bt.indicators.SMA(self.data.close, period=LONG)
            self.cross = bt.indicators.CrossOver(fast, slow)
            self.found: list[tuple[int, int]] = []

        def next(self) -> None:
            value = self.cross[0]
            if value:
                self.found.append((len(self) - 1, int(value)))

    best = float("inf")
    found: list[tuple[int, int]] = []
    for _ in range(repeats):
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(bt.feeds.PandasData(dataname=frame))
        cerebro.addstrategy(Cross)
        started = time.perf_counter()
        strategies = cerebro.run()
        best = min(best, time.perf_counter() - started)
        found = strategies[0].found
    assert len(closes) == len(frame)
    return best, found


def _bars(history: History) -> list[BarClosed]:
    return [b for b in history.items if isinstance(b, BarClosed)]


def _frame(history: History) -> Any:
    import numpy as np
    import pandas as pd

    bars = _bars(history)
    times = np.array([b.open_time for b in bars], dtype="int64")
    return pd.DataFrame(
        {
            "open": [float(b.open) for b in bars],
            "high": [float(b.high) for b in bars],
            "low": [float(b.low) for b in bars],
            "close": [float(b.close) for b in bars],
            "volume": [1.0] * len(bars),
        },
        index=pd.to_datetime(times, unit="ns"),
    )


def run(
    n: int = 1_000_000, repeats: int = 3, their_repeats: int = 1
) -> tuple[dict[str, float], str]:
    """Measure both side by side; return the figures and a Markdown section."""
    history = synthetic_history(n, interval="1m", seed=1)  # 1M days would overflow pandas
    our_seconds, our_cross = ours(history, repeats)
    their_seconds, their_cross = theirs(history, their_repeats)
    our_rate, their_rate = n / our_seconds, n / their_seconds
    same = our_cross == their_cross
    figures = {
        "bars": float(n),
        "algotrade_bars_per_second": our_rate,
        "backtrader_bars_per_second": their_rate,
        "ratio": our_rate / their_rate,
        "crossovers": float(len(our_cross)),
        "identical": float(same),
    }
    lines = [
        "## Backtest: SMA(50/200) crossover over 1,000,000 bars",
        "",
        "Command: `python bench/run_all.py --only=backtest` (also part of `nox -s bench`).",
        f"{n:,} synthetic one-minute bars in memory; algotrade best of {repeats} runs of",
        "`backtest(SmaCrossover(50, 200), bars)`: the live processor's pipeline and strategy",
        "object, paper trades through the trader's broker functions, equity curve, drawdown,",
        f"Sharpe ratio. backtrader {_version()} (`SMA` + `CrossOver` in a `Strategy`, default",
        f"`runonce`, no orders) best of {their_repeats}, same bars, same process, one after",
        "the other.",
        "",
        "| | seconds | bars/s |",
        "|---|---:|---:|",
        f"| algotrade `backtest` | {our_seconds:.2f} | {our_rate:,.0f} |",
        f"| backtrader SMA + CrossOver | {their_seconds:.2f} | {their_rate:,.0f} |",
        "",
        f"Ratio: **{our_rate / their_rate:.1f}x** backtrader. Crossovers: {len(our_cross):,} "
        f"({'identical bars and directions' if same else 'DIFFERENT from backtrader'}).",
        f"Goals: at least 500,000 bars/s ({'met' if our_rate >= 500_000 else 'NOT met'}) and "
        f"at least 20x backtrader ({'met' if our_rate / their_rate >= 20 else 'NOT met'}).",
    ]
    return figures, "\n".join(lines)


def _version() -> str:
    import backtrader as bt

    return str(bt.__version__)


if __name__ == "__main__":
    print(run()[1])
