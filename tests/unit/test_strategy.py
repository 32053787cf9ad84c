"""The SMA crossover: BUY above, SELL below, no repeats, equal averages change nothing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from algotrade.domain.errors import ConfigurationError
from algotrade.domain.strategy import SmaCrossover
from algotrade.domain.values import Side


def primed(short: float, long: float) -> SmaCrossover:
    """Return a crossover whose last sign was set by ``short`` against ``long``."""
    strategy = SmaCrossover(2, 3)
    assert strategy.compare(short, long) is None  # the first sign after warm-up only sets state
    return strategy


def test_go_buy_vector() -> None:
    """Short/long going from 95/100 to 105/100 is a BUY."""
    decision = primed(95, 100).compare(105, 100)
    assert decision is not None
    assert decision.side is Side.BUY
    assert (decision.short_sma, decision.long_sma) == (105, 100)


def test_go_sell_vector() -> None:
    """Short/long going from 105/100 to 95/100 is a SELL."""
    decision = primed(105, 100).compare(95, 100)
    assert decision is not None
    assert decision.side is Side.SELL


def test_go_neutral_vector() -> None:
    """Going to 100/100 is nothing, and does not reset the last sign."""
    strategy = primed(95, 100)
    assert strategy.compare(100, 100) is None
    decision = strategy.compare(101, 100)
    assert decision is not None
    assert decision.side is Side.BUY


def test_same_side_never_repeats() -> None:
    """Staying above the long average after a BUY emits nothing more."""
    strategy = primed(95, 100)
    assert strategy.compare(105, 100) is not None
    assert strategy.compare(106, 100) is None
    assert strategy.compare(100, 100) is None
    assert strategy.compare(107, 100) is None


def test_fall_then_rise_gives_one_buy_and_no_sell() -> None:
    """The Go original's regression: a steady fall then a steady rise gives exactly one BUY."""
    prices = [float(p) for p in range(300, 100, -1)] + [float(p) for p in range(100, 400)]
    strategy = SmaCrossover(5, 20)
    decisions = [(i, d) for i, p in enumerate(prices) if (d := strategy.update(p)) is not None]
    assert [d.side for _, d in decisions] == [Side.BUY]
    assert decisions[0][0] > 200  # after the turn, not during the fall


@given(st.lists(st.floats(min_value=1, max_value=1e6, allow_nan=False), max_size=400))
def test_signals_alternate(prices: list[float]) -> None:
    """On any series, decisions alternate between BUY and SELL."""
    strategy = SmaCrossover(3, 7)
    sides = [d.side for p in prices if (d := strategy.update(p)) is not None]
    assert all(a is not b for a, b in itertools.pairwise(sides))


@pytest.mark.parametrize(
    ("short", "long", "name"),
    [(0, 200, "short"), (-5, 200, "short"), (50, 0, "long"), (200, 50, "short"), (50, 50, "short")],
)
def test_rejects_bad_periods(short: int, long: int, name: str) -> None:
    """Non-positive periods and short >= long are configuration errors naming the option."""
    with pytest.raises(ConfigurationError) as caught:
        SmaCrossover(short, long)
    assert caught.value.name == name
