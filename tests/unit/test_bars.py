"""Bars: intervals parse strictly and bars close by exchange time."""

from __future__ import annotations

import pytest

from algotrade.domain.bars import BarAggregator, Interval
from algotrade.domain.errors import ConfigurationError
from tests.support.builders import D

S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("1s", S), ("15m", 900 * S), ("4h", 4 * 3600 * S), ("1d", 86400 * S), ("1w", 7 * 86400 * S)],
)
def test_interval_parses(text: str, nanos: int) -> None:
    """Intervals from one second to one week parse to nanoseconds."""
    assert Interval.parse(text).nanos == nanos


@pytest.mark.parametrize("text", ["", "0m", "1x", "m", "1.5h", "-1d", "1 d d"])
def test_interval_rejects(text: str) -> None:
    """Anything but <positive integer><unit> is a configuration error naming 'interval'."""
    with pytest.raises(ConfigurationError) as caught:
        Interval.parse(text)
    assert caught.value.name == "interval"


def test_bars_close_on_first_price_of_a_later_interval() -> None:
    """OHLC covers [open, open+interval); the bar closes when a later price arrives."""
    agg = BarAggregator("BTCUSDT", Interval.parse("1m"))
    prices = [(0, "10"), (10, "12"), (20, "9"), (59, "11")]
    for i, (sec, price) in enumerate(prices, start=1):
        assert agg.on_price(sec * S, D(price), i, sec * S) is None
    bar = agg.on_price(61 * S, D("13"), 5, 61 * S)
    assert bar is not None
    assert (bar.open, bar.high, bar.low, bar.close) == (D(10), D(12), D(9), D(11))
    assert (bar.open_time, bar.close_time, bar.updates, bar.last_position) == (0, 60 * S, 4, 4)
    assert bar.version == 1
    # Empty intervals produce no bar; the next bar opens at its own interval.
    bar = agg.on_price(300 * S, D("14"), 6, 300 * S)
    assert bar is not None
    assert bar.open_time == 60 * S
    assert bar.version == 2


def test_late_prices_are_ignored() -> None:
    """A price older than the open bar does not reopen a closed interval."""
    agg = BarAggregator("BTCUSDT", Interval.parse("1m"))
    agg.on_price(70 * S, D(1), 1, 0)
    assert agg.on_price(10 * S, D(100), 2, 0) is None
    bar = agg.on_price(130 * S, D(2), 3, 0)
    assert bar is not None
    assert bar.high == D(1)
