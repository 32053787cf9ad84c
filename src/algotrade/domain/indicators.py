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

    @property
    def seen(self) -> int:
        """Return how many values the window holds (``period`` once full)."""
        return len(self._window)


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


class RelativeStrengthIndex:
    """Wilder's RSI over ``period`` changes: 100 - 100 / (1 + average gain / average loss).

    The first averages are the simple means of the first ``period`` gains and losses; each
    later change updates them with Wilder's smoothing, ``avg = (avg * (period - 1) + x) /
    period``: O(1) per value. No loss in the window reads 100 (50 when nothing moved).
    """

    __slots__ = ("_count", "_gain", "_last", "_loss", "_value", "period")

    def __init__(self, period: int = 14) -> None:
        if period < 1:
            raise ConfigurationError("period", f"must be at least 1, got {period}")
        self.period = period
        self._last: float | None = None
        self._count = 0
        self._gain = 0.0
        self._loss = 0.0
        self._value: float | None = None

    def update(self, value: float) -> float | None:
        """Add one value; return the RSI once ``period`` changes were seen."""
        last, self._last = self._last, value
        if last is None:
            return None
        change = value - last
        gain, loss = (change, 0.0) if change > 0 else (0.0, -change)
        n = self.period
        if self._count < n:
            self._count += 1
            self._gain += gain
            self._loss += loss
            if self._count < n:
                return None
            self._gain /= n
            self._loss /= n
        else:
            self._gain = (self._gain * (n - 1) + gain) / n
            self._loss = (self._loss * (n - 1) + loss) / n
        if self._loss == 0.0:
            self._value = 50.0 if self._gain == 0.0 else 100.0
        else:
            self._value = 100.0 - 100.0 / (1.0 + self._gain / self._loss)
        return self._value

    @property
    def value(self) -> float | None:
        """Return the current RSI, or ``None`` during warm-up."""
        return self._value

    @property
    def ready(self) -> bool:
        """Return whether ``period`` changes were seen."""
        return self._value is not None


class BollingerBands:
    """The mean of the last ``period`` values, and bands ``width`` standard deviations
    (population, as TA-Lib and ``pandas.Series.rolling(...).std(ddof=0)``) above and below.

    Running sums of the values and of their squares make each update O(1); both are
    recomputed exactly (:func:`math.fsum`, about the mean) once every ``period`` updates, so
    that neither rounding nor the cancellation of large squares piles up.
    """

    __slots__ = ("_since_exact", "_sum", "_sumsq", "_window", "period", "width")

    def __init__(self, period: int = 20, width: float = 2.0) -> None:
        if period < 2:
            raise ConfigurationError("period", f"must be at least 2, got {period}")
        if not width > 0:
            raise ConfigurationError("width", f"must be positive, got {width}")
        self.period = period
        self.width = width
        self._window: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._sumsq = 0.0
        self._since_exact = 0

    def update(self, value: float) -> tuple[float, float, float] | None:
        """Add one value; return ``(lower, middle, upper)`` once ``period`` values were seen."""
        window = self._window
        full = len(window) == self.period
        leaving = window[0] if full else 0.0
        window.append(value)
        if not full and len(window) < self.period:
            self._sum += value
            return None
        since = self._since_exact + 1
        if full and since < self.period:
            self._since_exact = since
            self._sum += value - leaving
            self._sumsq += value * value - leaving * leaving
            mean = self._sum / self.period
            variance = max(0.0, self._sumsq / self.period - mean * mean)
        else:
            self._since_exact = 0
            self._sum = fsum(window)
            mean = self._sum / self.period
            variance = fsum((v - mean) ** 2 for v in window) / self.period
            self._sumsq = variance * self.period + self._sum * mean
        band = self.width * variance**0.5
        return (mean - band, mean, mean + band)

    @property
    def ready(self) -> bool:
        """Return whether ``period`` values were seen."""
        return len(self._window) == self.period


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
