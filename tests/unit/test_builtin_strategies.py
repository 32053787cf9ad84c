"""The built-in strategies beside the SMA crossover: their indicators against pandas, their
decisions on hand-made series, and sides that always alternate."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pandas as pd
import pytest

from algotrade.adapters.synthetic import synthetic_bars
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.indicators import BollingerBands, RelativeStrengthIndex
from algotrade.domain.strategy import BollingerBreakout, EmaCrossover, RsiReversion, Strategy
from algotrade.domain.values import Side
from tests.support.builders import bar


def walk(count: int, seed: int = 1, start: float = 30_000.0) -> list[float]:
    """Return a seeded random walk of prices (1% daily-like moves)."""
    rng = random.Random(seed)
    prices = [start]
    for _ in range(count - 1):
        prices.append(prices[-1] * (1 + rng.gauss(0, 0.01)))
    return prices


def decisions(strategy: Strategy, closes: list[float]) -> list[Side]:
    """Return the sides a strategy decides on bars closing at ``closes``."""
    out = []
    for i, close in enumerate(closes):
        decision = strategy.on_bar(bar(f"{close:.8f}", i))
        if decision is not None:
            out.append(decision.side)
    return out


def test_rsi_equals_wilders_rsi_computed_by_pandas() -> None:
    """Our O(1) RSI equals Wilder's, computed by pandas (a mean seed, then ewm with alpha
    1/period) within 1e-9 over 5,000 prices."""
    prices, n = walk(5_000), 14
    rsi = RelativeStrengthIndex(n)
    ours = [rsi.update(p) for p in prices]
    assert ours[:n] == [None] * n
    change = pd.Series(prices).diff()
    gains, losses = change.clip(lower=0), (-change).clip(lower=0)

    def wilder(x: pd.Series[float]) -> pd.Series[float]:
        seeded = pd.concat([pd.Series([x.iloc[1 : n + 1].mean()], index=[n]), x.iloc[n + 1 :]])
        smoothed: pd.Series[float] = seeded.ewm(alpha=1 / n, adjust=False).mean()
        return smoothed

    reference = 100 - 100 / (1 + wilder(gains) / wilder(losses))
    assert max(abs(float(ours[i] or 0) - reference[i]) for i in reference.index) < 1e-9


def test_rsi_of_a_series_without_losses_is_100_and_of_a_flat_one_50() -> None:
    """Only gains read 100, nothing moving reads 50."""
    rising, flat = RelativeStrengthIndex(3), RelativeStrengthIndex(3)
    assert [rising.update(v) for v in (1, 2, 3, 4)][-1] == 100.0
    assert [flat.update(v) for v in (5, 5, 5, 5)][-1] == 50.0


@pytest.mark.parametrize(("period", "width"), [(20, 2.0), (5, 1.5)])
def test_bollinger_bands_equal_each_windows_mean_and_std(period: int, width: float) -> None:
    """Our O(1) bands equal each window's numpy mean plus and minus ``width`` population
    standard deviations within 1e-11 of the mean, over 100,000 prices: no drift (pandas'
    rolling std, an online sum, drifts to 3e-7 here; short series agree with it too)."""
    prices = walk(100_000, seed=2)
    bands = BollingerBands(period, width)
    ours = np.array([b if (b := bands.update(p)) is not None else (0.0, 0.0, 0.0)
                     for p in prices])  # fmt: skip
    windows = np.lib.stride_tricks.sliding_window_view(np.array(prices), period)
    mean, std = windows.mean(axis=1), windows.std(axis=1)
    expected = np.stack([mean - width * std, mean, mean + width * std], axis=1)
    assert not ours[: period - 1].any()
    assert float(np.max(np.abs(ours[period - 1 :] - expected) / mean[:, None])) < 1e-11
    short = pd.Series(prices[:1_000])
    rolling = short.rolling(period)
    assert np.allclose(ours[period - 1 : 1_000, 1], rolling.mean()[period - 1 :], rtol=1e-12)
    upper = (rolling.mean() + width * rolling.std(ddof=0))[period - 1 :]
    assert np.allclose(ours[period - 1 : 1_000, 2], upper, rtol=1e-9)


def test_ema_crossover_buys_on_the_way_up_and_sells_on_the_way_down() -> None:
    """A fall, a rise and a fall: the fast EMA crosses the slow one up once, then down."""
    closes = [float(v) for v in [*range(100, 80, -1), *range(80, 120), *range(120, 90, -1)]]
    assert decisions(EmaCrossover(3, 8), closes) == [Side.BUY, Side.SELL]


def test_rsi_reversion_buys_oversold_and_sells_overbought() -> None:
    """A steady fall drives the RSI under 30 (BUY), a steady rise over 70 (SELL), once each."""
    closes = [100.0 - i for i in range(20)] + [80.0 + 2 * i for i in range(20)]
    sides = decisions(RsiReversion(5, 30, 70), closes)
    assert sides == [Side.BUY, Side.SELL]


def test_bollinger_breakout_buys_a_break_above_and_sells_below_the_mean() -> None:
    """A calm series, a jump above the upper band (BUY), then a fall below the mean (SELL)."""
    calm = [100.0 + (0.1 if i % 2 else -0.1) for i in range(30)]
    sides = decisions(BollingerBreakout(10, 2.0), [*calm, 103.0, 104.0, 105.0, 99.0, 98.0])
    assert sides == [Side.BUY, Side.SELL]


@pytest.mark.parametrize(
    "make", [lambda: EmaCrossover(12, 26), lambda: RsiReversion(), lambda: BollingerBreakout()]
)
def test_sides_alternate_on_a_long_market(make: object) -> None:
    """Over 5,000 synthetic days each strategy decides often, BUY first, sides alternating."""
    strategy = make()  # type: ignore[operator]
    sides = [d.side for b in synthetic_bars(5_000, seed=3) if (d := strategy.on_bar(b))]
    assert len(sides) > 10
    assert sides[0] is Side.BUY or isinstance(strategy, EmaCrossover)
    assert all(a is not b for a, b in itertools.pairwise(sides))


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: EmaCrossover(26, 12), "fast: must be less than slow"),
        (lambda: RsiReversion(oversold=70, overbought=30), "need 0 < oversold < overbought"),
        (lambda: BollingerBreakout(1), "period: must be at least 2"),
        (lambda: BollingerBreakout(20, 0.0), "width: must be positive"),
    ],
)
def test_impossible_parameters_are_configuration_errors(build: object, says: str) -> None:
    """Parameters that make no strategy are refused, naming the parameter."""
    with pytest.raises(ConfigurationError, match=says):
        build()  # type: ignore[operator]


def test_the_documented_backtest_table_is_what_a_fresh_run_gives() -> None:
    """docs/strategies.md's table of the built-ins' synthetic backtests matches a new run."""
    from algotrade.apps.backtesting import backtest, synthetic_history
    from algotrade.apps.strategies import BUILT_IN
    from tests.conftest import ROOT

    docs = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
    history = synthetic_history(3000, seed=42)
    for name, cls in BUILT_IN.items():
        result = backtest(cls(), history)
        m = result.metrics()
        params = ", ".join(f"{k}={v}" for k, v in result.params)
        figures = [m["signals"], m["round_trips"], f"{m['total_return']:+.1%}",
                   f"{m['max_drawdown']:.1%}", f"{m['win_rate']:.0%}"]  # fmt: skip
        row = f"| `{name}` | {params} | " + " | ".join(map(str, figures)) + " |"
        assert row in docs, row
