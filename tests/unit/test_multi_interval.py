"""A strategy may decide on its bars with the closed bars of a longer interval of its symbol
at hand (1h bars filtered by the 1d trend), and never sees a longer bar before it closed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from algotrade.adapters.candles import resample
from algotrade.domain.backtest import Backtester
from algotrade.domain.bars import BarRollup, Interval
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed
from algotrade.domain.processing import SymbolPipeline
from algotrade.domain.strategy import SmaCrossover
from tests.support.strategies import TrendFilter

MINUTE = 60_000_000_000


def minute_bars(closes: list[float], *, skip: set[int] = frozenset()) -> list[BarClosed]:  # type: ignore[assignment]
    """Return one-minute bars closing at ``closes`` (leaving out the indexes in ``skip``)."""
    out = []
    for i, close in enumerate(closes):
        if i in skip:
            continue
        price = Decimal(str(close))
        out.append(BarClosed(
            stream="bars-BTCUSDT-1m", version=i + 1, exchange_ts=(i + 1) * MINUTE,
            receive_ts=(i + 1) * MINUTE, symbol="BTCUSDT", interval="1m", open_time=i * MINUTE,
            close_time=(i + 1) * MINUTE, open=price, high=price + 1, low=price - 1, close=price,
            updates=1, last_position=i + 1,
        ))  # fmt: skip
    return out


def test_longer_bars_are_the_shorter_ones_merged_and_close_with_their_last() -> None:
    """Five-minute bars rolled up from minutes equal the resampled ones, each handed out
    with the minute that ends it, and a gap closes a period when the next one starts."""
    bars = minute_bars([100 + (i % 7) for i in range(23)])
    rollup = BarRollup("BTCUSDT", Interval.parse("5m"))
    handed = [(b.close_time, longer) for b in bars for longer in rollup.add(b)]
    expected = [
        b for b in resample(bars, Interval.parse("5m")) if b.close_time <= bars[-1].close_time
    ]
    assert [longer for _, longer in handed] == expected[: len(handed)]
    assert all(at == longer.close_time for at, longer in handed)  # with the minute ending it
    gapped = minute_bars([100.0] * 12, skip={4})  # the period 0-5 lacks its last minute
    rollup = BarRollup("BTCUSDT", Interval.parse("5m"))
    closes = [
        (b.open_time // MINUTE, [x.close_time // MINUTE for x in rollup.add(b)]) for b in gapped
    ]
    assert closes[4] == (5, [5])  # minute 5 starts the next period: the first one closes
    assert closes[8] == (9, [10])  # the next period closes with its own last minute


def test_a_strategy_sees_only_longer_bars_that_closed() -> None:
    """On every one of its bars, the latest longer bar the strategy holds closed at or
    before that bar's close: no lookahead."""
    strategy = TrendFilter("5m")
    pipeline = SymbolPipeline("BTCUSDT", Interval.parse("1m"), strategy)
    signals = [
        s
        for b in minute_bars([100 + (i * 7 % 11) for i in range(200)])
        if (s := pipeline.on_bar(b))
    ]
    assert signals
    assert strategy.seen
    assert all(trend <= bar for bar, trend in strategy.seen)
    assert [b.interval for b in strategy.context] == ["5m"] * 40


def test_the_backtest_runs_a_multi_interval_strategy_as_the_pipeline_does() -> None:
    """The backtest's bar loop hands the longer bars over too: same signals as the pipeline."""
    bars = minute_bars([100 + (i * 7 % 11) for i in range(200)])
    live = SymbolPipeline("BTCUSDT", Interval.parse("1m"), TrendFilter("5m"))
    expected = [s for b in bars if (s := live.on_bar(b))]
    tester = Backtester(SymbolPipeline("BTCUSDT", Interval.parse("1m"), TrendFilter("5m")))
    tester.run_bars(bars)
    assert tester.signals == expected


@pytest.mark.parametrize(
    ("strategy", "says"),
    [
        (TrendFilter("30s"), "30s is not a longer multiple of the bars' 1m"),
        (TrendFilter("90s"), "1m30s|90s is not a longer multiple"),
    ],
)
def test_an_interval_that_is_not_a_longer_multiple_is_refused(
    strategy: TrendFilter, says: str
) -> None:
    """Only longer multiples of the strategy's own bars can be rolled up from them."""
    with pytest.raises(ConfigurationError, match=says):
        SymbolPipeline("BTCUSDT", Interval.parse("1m"), strategy)


def test_asking_for_intervals_needs_on_context_bar() -> None:
    """A strategy naming intervals without on_context_bar(bar) is refused."""
    strategy = SmaCrossover(3, 8)
    strategy.intervals = ("1h",)  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="has no on_context_bar"):
        SymbolPipeline("BTCUSDT", Interval.parse("1m"), strategy)
