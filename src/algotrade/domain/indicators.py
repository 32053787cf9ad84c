"""Indicators: moving averages with O(1) updates."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class SimpleMovingAverage:
    """Mean of the last ``period`` values, updated in O(1) with a running sum.

    The running sum is corrected with Neumaier's compensated summation so that rounding
    errors do not accumulate over millions of updates.
    """

    __slots__ = ("_comp", "_sum", "_window", "period")

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"period must be at least 1, got {period}")
        self.period = period
        self._window: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._comp = 0.0

    def update(self, value: float) -> float | None:
        """Add one value; return the average once ``period`` values were seen."""
        window = self._window
        if len(window) == self.period:
            self._add(-window[0])
        window.append(value)
        self._add(value)
        if len(window) < self.period:
            return None
        return (self._sum + self._comp) / self.period

    def _add(self, x: float) -> None:
        s = self._sum
        t = s + x
        if abs(s) >= abs(x):
            self._comp += (s - t) + x
        else:
            self._comp += (x - t) + s
        self._sum = t

    @property
    def value(self) -> float | None:
        """Return the current average, or ``None`` during warm-up."""
        if len(self._window) < self.period:
            return None
        return (self._sum + self._comp) / self.period

    @property
    def ready(self) -> bool:
        """Return whether ``period`` values were seen."""
        return len(self._window) == self.period


def sma_series(values: Iterable[float], period: int) -> list[float]:
    """Return the SMA of ``values`` for every position where the window is full."""
    sma = SimpleMovingAverage(period)
    out = []
    for v in values:
        r = sma.update(v)
        if r is not None:
            out.append(r)
    return out
