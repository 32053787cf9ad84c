"""Strategies turn closed bars into decisions; :class:`SmaCrossover` is the default one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed, Side
from algotrade.domain.indicators import SimpleMovingAverage


@dataclass(frozen=True, slots=True)
class Decision:
    """A strategy's wish to buy or sell, with the indicator values that led to it."""

    side: Side
    short_sma: float
    long_sma: float


class Strategy(Protocol):
    """Anything that reads closed bars one by one and sometimes decides to trade."""

    @property
    def name(self) -> str:
        """Return a short stable name, part of every signal id."""
        ...

    @property
    def params(self) -> tuple[tuple[str, int], ...]:
        """Return the parameters, part of every signal id."""
        ...

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """Consume one closed bar; return a decision or ``None``."""
        ...


class SmaCrossover:
    """BUY when the short SMA crosses above the long SMA, SELL when it crosses below.

    Evaluated on each closed bar once both averages are defined. A crossover is a change of
    the sign of ``short - long`` against the last non-zero sign. Equal averages neither
    trigger nor reset that sign, and the first sign after warm-up only sets it (the
    semantics of backtrader's ``CrossOver``). So sides always alternate and no signal
    repeats.
    """

    name = "sma_crossover"

    def __init__(self, short: int = 50, long: int = 200) -> None:
        if short < 1:
            raise ConfigurationError("short", f"must be a positive period, got {short}")
        if long < 1:
            raise ConfigurationError("long", f"must be a positive period, got {long}")
        if short >= long:
            raise ConfigurationError("short", f"must be less than long ({short} >= {long})")
        self.short = SimpleMovingAverage(short)
        self.long = SimpleMovingAverage(long)
        self._sign = 0

    @property
    def params(self) -> tuple[tuple[str, int], ...]:
        """Return ``(("short", n), ("long", m))``."""
        return (("short", self.short.period), ("long", self.long.period))

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """Update both SMAs with the bar's close; return a decision on a crossover."""
        return self.update(float(bar.close))

    def update(self, close: float) -> Decision | None:
        """Update both SMAs with one closing price; return a decision on a crossover."""
        short = self.short.update(close)
        long = self.long.update(close)
        if short is None or long is None:
            return None
        return self.compare(short, long)

    def compare(self, short: float, long: float) -> Decision | None:
        """Feed one pair of defined averages through the crossover state."""
        if short > long:
            sign = 1
        elif short < long:
            sign = -1
        else:
            return None
        previous, self._sign = self._sign, sign
        if previous == 0 or previous == sign:
            return None
        return Decision(Side.BUY if sign > 0 else Side.SELL, short, long)
