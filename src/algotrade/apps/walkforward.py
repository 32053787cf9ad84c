"""Walk-forward validation: optimise on a window of the past, trade the next stretch with
what won, move on.

The history is cut into ``n`` rolling windows whose out-of-sample stretches follow each
other to the end of the history::

    |---- in-sample 1 ----|-- out 1 --|
               |---- in-sample 2 ----|-- out 2 --|
                          |---- in-sample 3 ----|-- out 3 --|

``in_sample`` is the in-sample share of a window (0.75: three times as long as the stretch
it is tested on). Each in-sample window is searched as ``algotrade optimize`` would; the
winner is then backtested on the next stretch, its strategy first fed the in-sample bars
(as the live processor's warm-up: no trade, indicators filled), starting with the equity
the previous stretch ended with. A position still open at a stretch's end is valued at its
last close; the next stretch starts flat with that value. The stretches joined are the
equity a user of the method would have had: an optimum that only fits its own window shows
as in-sample figures far above the out-of-sample ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, cast

from algotrade.apps.optimize import Search, Trial, run_search
from algotrade.apps.strategies import resolve
from algotrade.domain.backtest import max_drawdown, sharpe_ratio
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed
from algotrade.services.backtesting import History


@dataclass(frozen=True, slots=True)
class Window:
    """One walk-forward step: the in-sample search's winner and its out-of-sample run."""

    index: int
    in_sample: tuple[int, int]  # first and last bar open time (ns)
    out_of_sample: tuple[int, int]
    params: tuple[tuple[str, Any], ...]
    in_sample_metrics: dict[str, Any]
    out_of_sample_metrics: dict[str, Any]
    curve: tuple[tuple[int, float], ...]  # (close time ns, equity) out of sample
    trials: tuple[Trial, ...] = ()  # the in-sample search, best first


@dataclass(frozen=True, slots=True)
class WalkForward:
    """Every window, and the out-of-sample stretches joined."""

    objective: str
    in_sample: float
    initial_cash: float
    windows: tuple[Window, ...]
    interval_ns: int

    @property
    def curve(self) -> list[tuple[int, float]]:
        """Return the joined out-of-sample equity curve."""
        return [point for window in self.windows for point in window.curve]

    def summary(self) -> dict[str, Any]:
        """Return the out-of-sample figures of the joined stretches, beside the mean
        in-sample and out-of-sample objective (the gap between them is the over-fit)."""
        equity = [value for _, value in self.curve]
        final = equity[-1] if equity else self.initial_cash
        sharpe = sharpe_ratio(equity, self.interval_ns, self.initial_cash)

        def mean(values: list[Any]) -> float | None:
            numbers = [float(v) for v in values if v is not None and not math.isnan(float(v))]
            return sum(numbers) / len(numbers) if numbers else None

        key = self.objective
        return {
            "windows": len(self.windows),
            "bars": len(equity),
            "final_equity": round(final, 8),
            "total_return": round(final / self.initial_cash - 1, 8),
            "max_drawdown": round(max_drawdown(equity), 8),
            "sharpe": None if sharpe is None else round(sharpe, 6),
            "round_trips": sum(w.out_of_sample_metrics["round_trips"] for w in self.windows),
            f"in_sample_mean_{key}": mean([w.in_sample_metrics.get(key) for w in self.windows]),
            f"out_of_sample_mean_{key}": mean(
                [w.out_of_sample_metrics.get(key) for w in self.windows]
            ),
        }


def windows_of(total: int, n: int, in_sample: float) -> list[tuple[range, range]]:
    """Return ``n`` rolling (in-sample, out-of-sample) index ranges over ``total`` bars;
    the out-of-sample ranges follow each other to the last bar.

    Raises:
        ConfigurationError: ``n`` or ``in_sample`` out of range, or too few bars.
    """
    if n < 1:
        raise ConfigurationError("walk_forward", f"needs at least one window, got {n}")
    if not 0 < in_sample < 1:
        raise ConfigurationError("in_sample", f"must be a share in (0, 1), got {in_sample}")
    ratio = in_sample / (1 - in_sample)  # in-sample length per out-of-sample bar
    step = int(total / (n + ratio))
    length = total - n * step
    if step < 1 or length < 2:
        raise ConfigurationError(
            "walk_forward", f"{total:,} bars are too few for {n} windows at {in_sample:.0%}"
        )
    out = []
    for k in range(n):
        start = k * step
        stop = start + length
        out.append((range(start, stop), range(stop, min(stop + step, total))))
    return out


def walk_forward(
    search: Search,
    history: History,
    n: int,
    *,
    in_sample: float = 0.75,
    jobs: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    fee: Decimal = Decimal("0.001"),
    initial_cash: Decimal = Decimal(10_000),
    quantity: Decimal | None = None,
) -> WalkForward:
    """Run the walk-forward of ``search`` over bar ``history`` in ``n`` windows.

    Raises:
        ConfigurationError: the history is not bars, is too short, or a window's search
            has no candidate.
    """
    from algotrade.apps.backtesting import backtest

    if history.kind != "bars":
        raise ConfigurationError(
            "walk_forward", "needs bars (a kline CSV, a data set or --synthetic), "
            f"not the market events of {history.source}",
        )  # fmt: skip
    items = cast("list[BarClosed]", list(history.items))
    spans = windows_of(len(items), n, in_sample)
    sets = sum(1 for _ in search.candidates())
    done = [0]

    def step(finished: int, _total: int) -> None:
        if on_progress is not None:
            on_progress(done[0] + finished, sets * n)

    cash = Decimal(initial_cash)
    windows: list[Window] = []
    for index, (inside, outside) in enumerate(spans, start=1):
        sample = replace(history, items=items[inside.start : inside.stop])
        trials = run_search(
            search, sample, jobs=jobs, on_progress=step,
            fee=fee, initial_cash=cash, quantity=quantity,
        )  # fmt: skip
        done[0] += sets
        best: Trial = trials[0]
        given = [(name, str(value)) for name, value in best.params]
        tested = replace(history, items=items[outside.start : outside.stop])
        warmup = items[inside.start : inside.stop]
        result = backtest(
            resolve(search.strategy, given).build(), tested, warmup=warmup,
            fee=fee, initial_cash=cash, quantity=quantity,
        )  # fmt: skip
        bars = items[outside.start : outside.stop]
        windows.append(
            Window(
                index=index,
                in_sample=(items[inside.start].open_time, items[inside.stop - 1].open_time),
                out_of_sample=(bars[0].open_time, bars[-1].open_time),
                params=best.params,
                in_sample_metrics=best.metrics,
                out_of_sample_metrics=result.metrics(),
                curve=tuple(result.equity_curve),
                trials=tuple(trials),
            )
        )
        cash = Decimal(str(round(result.final_equity, 8)))
    return WalkForward(
        search.objective, in_sample, float(initial_cash), tuple(windows), history.interval.nanos
    )
