"""Indicators: moving averages with O(1) updates, usable on their own.

Each indicator takes one value per :meth:`update` and returns its current value, or
``None`` while it has not seen enough values (its warm-up).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from math import fsum
from typing import Protocol

from algotrade.domain.errors import ConfigurationError


class Indicator(Protocol):
    """What every indicator offers: one value in, the current value (or ``None``) out."""

    period: int

    def update(self, value: float) -> float | None:
        """Add one value; return the indicator's value once warmed up."""
        ...

    @property
    def value(self) -> float | None:
        """Return the current value, or ``None`` during warm-up."""
        ...

    @property
    def ready(self) -> bool:
        """Return whether the warm-up is over."""
        ...


class SimpleMovingAverage:
    """Mean of the last ``period`` values, updated in O(1) with a running sum.

    Each update adds the new value and subtracts the one leaving the window. So that
    rounding errors cannot pile up over millions of updates, the sum is recomputed
    exactly (:func:`math.fsum`) once every ``period`` updates: the error is that of at
    most ``2 * period`` additions, and the cost stays O(1) per value.
    """

    __slots__ = ("_since_exact", "_sum", "_window", "period")

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ConfigurationError("period", f"must be at least 1, got {period}")
        self.period = period
        self._window: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._since_exact = 0

    def update(self, value: float) -> float | None:
        """Add one value; return the average once ``period`` values were seen."""
        window = self._window
        if len(window) == self.period:
            leaving = window[0]
            window.append(value)
            since = self._since_exact + 1
            if since < self.period:
                self._since_exact = since
                total = self._sum = self._sum + value - leaving
            else:
                self._since_exact = 0
                total = self._sum = fsum(window)
            return total / self.period
        window.append(value)
        self._sum += value
        if len(window) < self.period:
            return None
        self._since_exact = 0
        total = self._sum = fsum(window)
        return total / self.period

    @property
    def value(self) -> float | None:
        """Return the current average, or ``None`` during warm-up."""
        if len(self._window) < self.period:
            return None
        return self._sum / self.period

    @property
    def ready(self) -> bool:
        """Return whether ``period`` values were seen."""
        return len(self._window) == self.period


class ExponentialMovingAverage:
    """Exponential moving average with smoothing ``alpha = 2 / (period + 1)``.

    Seeded with the simple average of the first ``period`` values (as TA-Lib and
    backtrader do), then ``ema = ema + alpha * (value - ema)`` for each later value.
    """

    __slots__ = ("_count", "_seed", "_value", "alpha", "period")

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ConfigurationError("period", f"must be at least 1, got {period}")
        self.period = period
        self.alpha = 2.0 / (period + 1)
        self._count = 0
        self._seed = 0.0
        self._value: float | None = None

    def update(self, value: float) -> float | None:
        """Add one value; return the average once ``period`` values were seen."""
        current = self._value
        if current is not None:
            current += self.alpha * (value - current)
            self._value = current
            return current
        self._count += 1
        self._seed += value
        if self._count < self.period:
            return None
        self._value = self._seed / self.period
        return self._value

    @property
    def value(self) -> float | None:
        """Return the current average, or ``None`` during warm-up."""
        return self._value

    @property
    def ready(self) -> bool:
        """Return whether ``period`` values were seen."""
        return self._value is not None


def sma_series(values: Iterable[float], period: int) -> list[float]:
    """Return the SMA of ``values`` for every position where the window is full."""
    return _series(SimpleMovingAverage(period), values)


def ema_series(values: Iterable[float], period: int) -> list[float]:
    """Return the EMA of ``values`` for every position after the warm-up."""
    return _series(ExponentialMovingAverage(period), values)


def _series(indicator: Indicator, values: Iterable[float]) -> list[float]:
    out = []
    for v in values:
        r = indicator.update(v)
        if r is not None:
            out.append(r)
    return out
