"""Time bars: a price series cut into fixed intervals by exchange time."""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import overload

from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed
from algotrade.domain.streams import bar_stream

_UNITS_NS = {
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
    "w": 7 * 86_400 * 1_000_000_000,
}
_INTERVAL = re.compile(r"^([1-9][0-9]*)([smhdw])$")


@dataclass(frozen=True, slots=True)
class Interval:
    """A bar length such as ``1s``, ``15m``, ``4h`` or ``1d``."""

    name: str
    nanos: int

    @classmethod
    def parse(cls, text: str) -> Interval:
        """Parse ``<n><unit>`` with unit one of s, m, h, d, w (``1s`` up to ``1w``).

        Raises:
            ConfigurationError: the text is not an interval.
        """
        match = _INTERVAL.match(text.strip())
        if match is None:
            raise ConfigurationError(
                "interval", f"{text!r} is not an interval like 1s, 5m, 1h or 1d"
            )
        count, unit = int(match[1]), match[2]
        return cls(f"{count}{unit}", count * _UNITS_NS[unit])

    def __str__(self) -> str:
        return self.name


class BarAggregator:
    """Cuts one symbol's prices into bars of one interval.

    A bar covers ``[open_time, open_time + interval)`` in exchange time, aligned to the Unix
    epoch. It closes when the first price of a later interval arrives; intervals without any
    price produce no bar.
    """

    __slots__ = (
        "_close",
        "_floor",
        "_high",
        "_last_position",
        "_low",
        "_open",
        "_open_time",
        "_stream",
        "_updates",
        "interval",
        "symbol",
        "version",
    )

    def __init__(self, symbol: str, interval: Interval, *, version: int = 0) -> None:
        self.symbol = symbol
        self.interval = interval
        self._stream = bar_stream(symbol, interval.name)
        self.version = version
        self._open_time = -1
        self._floor = -1
        self._open = self._high = self._low = self._close = Decimal(0)
        self._updates = 0
        self._last_position = 0

    def resume_after(self, bar: BarClosed) -> None:
        """Continue after a stored bar: later prices of the same interval are ignored."""
        self.version = bar.version
        self._open_time = -1
        self._floor = bar.open_time

    def on_price(self, ts: int, price: Decimal, position: int, receive_ts: int) -> BarClosed | None:
        """Add one price at exchange time ``ts``; return the bar it closed, if any."""
        open_time = ts - ts % self.interval.nanos
        if open_time == self._open_time:
            if price > self._high:
                self._high = price
            elif price < self._low:
                self._low = price
            self._close = price
            self._updates += 1
            self._last_position = position
            return None
        if open_time < self._open_time or open_time <= self._floor:
            return None  # a late price for a bar already past; bars close by exchange time
        closed = self._closed_bar(ts, receive_ts)
        self._open_time = open_time
        self._open = self._high = self._low = self._close = price
        self._updates = 1
        self._last_position = position
        return closed

    def _closed_bar(self, ts: int, receive_ts: int) -> BarClosed | None:
        if self._open_time < 0:
            return None
        self.version += 1
        return BarClosed(
            stream=self._stream,
            version=self.version,
            exchange_ts=ts,
            receive_ts=receive_ts,
            symbol=self.symbol,
            interval=self.interval.name,
            open_time=self._open_time,
            close_time=self._open_time + self.interval.nanos,
            open=self._open,
            high=self._high,
            low=self._low,
            close=self._close,
            updates=self._updates,
            last_position=self._last_position,
        )


class BarRollup:
    """Closed bars of a longer ``interval`` made of closed bars of a shorter one (epoch
    aligned, a multiple of theirs), for strategies that decide on several intervals.

    A longer bar closes with the shorter bar that ends its period (its close time on the
    boundary), or, when that bar is missing, when a bar of a later period arrives: never
    before all of it is known, so a strategy sees no bar before it closed.
    """

    def __init__(self, symbol: str, interval: Interval) -> None:
        self.symbol = symbol
        self.interval = interval
        self._bars: list[BarClosed] = []
        self._version = 0

    def add(self, bar: BarClosed) -> list[BarClosed]:
        """Add one closed shorter bar; return the longer bars it closes (at most two: the
        previous period's, left incomplete by a gap, and its own)."""
        size = self.interval.nanos
        if size % (bar.close_time - bar.open_time) or size <= bar.close_time - bar.open_time:
            raise ConfigurationError(
                "intervals", f"{self.interval.name} is not a longer multiple of {bar.interval}"
            )
        closed = []
        start = bar.open_time - bar.open_time % size
        if self._bars and self._bars[0].open_time - self._bars[0].open_time % size != start:
            closed.append(self._merge())
        self._bars.append(bar)
        if bar.close_time % size == 0:
            closed.append(self._merge())
        return closed

    def _merge(self) -> BarClosed:
        bars, self._bars = self._bars, []
        first, last = bars[0], bars[-1]
        start = first.open_time - first.open_time % self.interval.nanos
        self._version += 1
        return BarClosed(
            stream=bar_stream(self.symbol, self.interval.name),
            version=self._version,
            exchange_ts=last.exchange_ts,
            receive_ts=last.receive_ts,
            symbol=self.symbol,
            interval=self.interval.name,
            open_time=start,
            close_time=start + self.interval.nanos,
            open=first.open,
            high=max(b.high for b in bars),
            low=min(b.low for b in bars),
            close=last.close,
            updates=sum(b.updates for b in bars),
            last_position=last.last_position,
        )


class BarColumns(Sequence[BarClosed]):
    """Closed bars of one symbol and interval held as columns, each bar built only when
    asked for: a million bars of history without a million objects.

    ``closes`` are the closing prices as floats (what the strategies compute with) and
    ``close_times`` the bars' close times in ns, one per bar, in bar order.
    """

    closes: Sequence[float]
    close_times: Sequence[int]

    @abstractmethod
    def __len__(self) -> int: ...

    @overload
    def __getitem__(self, index: int) -> BarClosed: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[BarClosed]: ...

    @abstractmethod
    def __getitem__(self, index: int | slice) -> BarClosed | Sequence[BarClosed]: ...
