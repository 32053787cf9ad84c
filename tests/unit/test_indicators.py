"""The simple moving average: the Go original's vectors, and O(1) updates equal to the mean."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from algotrade.domain.errors import ConfigurationError
from algotrade.domain.indicators import SimpleMovingAverage, sma_series


@pytest.mark.parametrize(
    ("values", "period", "expected"),
    [
        (list(range(1, 11)), 3, [2, 3, 4, 5, 6, 7, 8, 9]),
        ([1, 2, 3], 5, []),
        ([], 3, []),
        ([1, 2, 3, 4, 5], 5, [3]),
    ],
)
def test_go_original_vectors(values: list[int], period: int, expected: list[float]) -> None:
    """The SMA reproduces the Go original's test vectors."""
    assert sma_series(map(float, values), period) == expected


def test_value_is_none_during_warm_up() -> None:
    """Until ``period`` values were seen the average is undefined."""
    sma = SimpleMovingAverage(3)
    assert sma.update(1.0) is None
    assert sma.update(2.0) is None
    assert not sma.ready
    assert sma.update(3.0) == 2.0
    assert sma.ready
    assert sma.value == 2.0


def test_window_covers_the_newest_values() -> None:
    """The window slides: the oldest value leaves (the Go original averaged the oldest ones)."""
    sma = SimpleMovingAverage(2)
    for v in (100.0, 1.0, 2.0):
        sma.update(v)
    assert sma.value == 1.5


@pytest.mark.parametrize("period", [0, -1])
def test_rejects_non_positive_period(period: int) -> None:
    """A period below one is refused."""
    with pytest.raises(ConfigurationError, match="period"):
        SimpleMovingAverage(period)


@given(
    st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), max_size=300),
    st.integers(min_value=1, max_value=60),
)
def test_incremental_equals_naive_mean(values: list[float], period: int) -> None:
    """For any series and period, the running SMA equals the mean of the last ``period`` values."""
    got = sma_series(values, period)
    naive = [
        math.fsum(values[i - period + 1 : i + 1]) / period for i in range(period - 1, len(values))
    ]
    assert len(got) == len(naive)
    for a, b in zip(got, naive, strict=True):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-6)
