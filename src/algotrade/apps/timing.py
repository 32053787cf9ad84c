"""An event store that times its operations for the ``store_operation_seconds`` histogram.

The services wrap their store in :class:`TimedStore` at start-up; the store's own checks and
figures still see the store itself (``TimedStore.inner``). ``wait`` is not timed: it blocks
until an event arrives or its timeout passes, so its time is not the operation's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from algotrade.domain.events import Event
from algotrade.domain.ports import AppendResult, EventStore, StoredEvent, Tracking

OperationObserver = Callable[[str, float], None]
"""Records how long one operation took: ``("append", 0.004)``."""


class TimedStore:
    """An :class:`EventStore` that reports how long each operation of ``inner`` took."""

    def __init__(self, inner: EventStore, observe: OperationObserver) -> None:
        self.inner = inner
        self.observe = observe

    async def append(
        self, events: Sequence[Event], *, tracking: Tracking | None = None
    ) -> AppendResult:
        """Store ``events`` (and ``tracking``) atomically, timed."""
        started = time.perf_counter()
        result = await self.inner.append(events, tracking=tracking)
        self.observe("append", time.perf_counter() - started)
        return result

    async def read_stream(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Return a stream's events with version above ``after_version``, timed."""
        started = time.perf_counter()
        events = await self.inner.read_stream(stream, after_version=after_version, limit=limit)
        self.observe("read_stream", time.perf_counter() - started)
        return events

    async def last_event(self, stream: str) -> Event | None:
        """Return the stream's latest event, timed."""
        started = time.perf_counter()
        event = await self.inner.last_event(stream)
        self.observe("last_event", time.perf_counter() - started)
        return event

    async def read_all(
        self,
        after: int = 0,
        *,
        limit: int = 1000,
        types: tuple[type[Event], ...] | None = None,
        levels: bool = True,
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events with position above ``after``, timed."""
        started = time.perf_counter()
        events = await self.inner.read_all(after, limit=limit, types=types, levels=levels)
        self.observe("read_all", time.perf_counter() - started)
        return events

    async def head(self) -> int:
        """Return the highest position stored, timed."""
        started = time.perf_counter()
        position = await self.inner.head()
        self.observe("head", time.perf_counter() - started)
        return position

    async def wait(self, after: int, timeout: float) -> bool:
        """Wait until an event above ``after`` exists or ``timeout`` passes (not timed)."""
        return await self.inner.wait(after, timeout)

    async def tracking_position(self, name: str) -> int:
        """Return the position recorded for a consumer, timed."""
        started = time.perf_counter()
        position = await self.inner.tracking_position(name)
        self.observe("tracking_position", time.perf_counter() - started)
        return position

    async def ping(self) -> None:
        """Check that the store answers (the health probe; not timed)."""
        await self.inner.ping()

    async def close(self) -> None:
        """Release the store's resources."""
        await self.inner.close()
