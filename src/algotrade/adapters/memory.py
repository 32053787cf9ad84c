"""In-memory adapters: the fakes tests use, and the in-process signal bus of ``run``."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Sequence

import anyio

from algotrade.adapters.redelivery import Redelivery
from algotrade.domain.appending import StreamState, plan_append
from algotrade.domain.events import Event, SignalEmitted
from algotrade.domain.ports import AppendResult, Delivery, StoredEvent, Tracking


class InMemoryEventStore:
    """An event store in a Python list, with the same semantics as the durable ones."""

    def __init__(self) -> None:
        self._events: list[StoredEvent] = []
        self._ids: set[str] = set()
        self._sequences: dict[str, int] = {}  # stream -> highest natural order stored
        self._streams: dict[str, list[Event]] = {}
        self._tracking: dict[str, int] = {}
        self._changed = anyio.Event()
        self._waiters = 0

    async def append(
        self, events: Sequence[Event], *, tracking: Tracking | None = None
    ) -> AppendResult:
        """Store ``events`` atomically; see the port for the rules."""
        cursors: dict[str, StreamState] = {}
        streams, sequences = self._streams, self._sequences

        def cursor(name: str) -> StreamState:
            state = cursors.get(name)
            if state is None:
                state = cursors[name] = StreamState(len(streams.get(name, ())), sequences.get(name))
            return state

        ids = self._ids
        seen = {i for e in events if (i := e.id) in ids}
        plan = plan_append(events, cursor, seen)  # raises before anything is kept
        staged = plan.events
        duplicates = plan.duplicates
        start = len(self._events)
        stored = tuple(StoredEvent(start + i + 1, e) for i, e in enumerate(staged))
        self._events.extend(stored)
        for e in staged:
            streams.setdefault(e.stream, []).append(e)
            ids.add(e.id)
        for name, state in cursors.items():
            if state.sequence is not None:
                sequences[name] = state.sequence
        if tracking is not None:
            self._tracking[tracking.name] = tracking.position
        if stored and self._waiters:
            self._changed.set()
            self._changed = anyio.Event()
        return AppendResult(stored, duplicates)

    async def read_stream(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Return a stream's events after ``after_version``."""
        events = self._streams.get(stream, [])[after_version:]
        return events if limit is None else events[:limit]

    async def last_event(self, stream: str) -> Event | None:
        """Return the stream's latest event."""
        events = self._streams.get(stream)
        return events[-1] if events else None

    async def read_all(
        self,
        after: int = 0,
        *,
        limit: int = 1000,
        types: tuple[type[Event], ...] | None = None,
        levels: bool = True,  # nothing to decode here: the events keep their levels
    ) -> list[StoredEvent]:
        """Return events after position ``after``."""
        out = []
        for stored in self._events[after:]:
            if types is None or isinstance(stored.event, types):
                out.append(stored)
                if len(out) >= limit:
                    break
        return out

    async def head(self) -> int:
        """Return the last position."""
        return len(self._events)

    async def wait(self, after: int, timeout: float) -> bool:
        """Wait for an event above ``after``."""
        self._waiters += 1
        try:
            with anyio.move_on_after(timeout):
                while len(self._events) <= after:
                    await self._changed.wait()
        finally:
            self._waiters -= 1
        return len(self._events) > after

    async def tracking_position(self, name: str) -> int:
        """Return a consumer's recorded position."""
        return self._tracking.get(name, 0)

    async def ping(self) -> None:
        """Always answers: it lives in this process."""

    async def close(self) -> None:
        """Nothing to release."""


class InMemorySignalBus:
    """An in-process signal bus with at-least-once delivery and acknowledgements, for one
    consumer (the trader of ``algotrade run``).

    Unacknowledged deliveries stay pending. What is still pending when the consumer asks
    for more was not acted upon (its orders could not be stored): :meth:`receive` hands it
    out again first, after a back-off (0.1 s, doubling up to ``max_retry_wait``), as Redis
    reclaims a dead consumer's entries. :meth:`redeliver_pending` does it at once (what a
    restarted consumer would get).
    """

    def __init__(self, *, retry_wait: float = 0.1, max_retry_wait: float = 5.0) -> None:
        self._queue: deque[Delivery] = deque()
        self._pending: dict[str, Delivery] = {}
        self._next = 0
        self._ready = anyio.Event()
        self._redelivery = Redelivery(retry_wait, max_retry_wait)
        self.published = 0
        self.acknowledged = 0

    async def publish(self, signals: Sequence[SignalEmitted]) -> None:
        """Queue signals for the consumer."""
        for signal in signals:
            self._next += 1
            self._queue.append(Delivery(str(self._next), signal))
            self.published += 1
        if signals:
            self._ready.set()

    async def receive(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        """Return up to ``max_count`` queued deliveries, waiting up to ``timeout``; the
        pending ones come first, again, once their back-off has passed."""
        if self._pending:
            if not self._redelivery.scheduled:
                self._redelivery.schedule(max(d.attempt for d in self._pending.values()) + 1)
            if not await self._redelivery.due(timeout):
                return []
            self.redeliver_pending()
        if not self._queue:
            with anyio.move_on_after(timeout):
                await self._ready.wait()
        self._ready = anyio.Event()
        out: list[Delivery] = []
        while self._queue and len(out) < max_count:
            delivery = self._queue.popleft()
            self._pending[delivery.token] = delivery
            out.append(delivery)
        if self._queue:
            self._ready.set()
        return out

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Forget acknowledged deliveries."""
        for delivery in deliveries:
            if self._pending.pop(delivery.token, None) is not None:
                self.acknowledged += 1

    def redeliver_pending(self) -> None:
        """Queue every unacknowledged delivery again, first and in order, with its attempt
        counted."""
        again = [dataclasses.replace(d, attempt=d.attempt + 1) for d in self._pending.values()]
        self._queue.extendleft(reversed(again))
        self._pending.clear()
        if self._queue:
            self._ready.set()

    @property
    def pending(self) -> int:
        """Return how many deliveries wait for an acknowledgement."""
        return len(self._pending)

    @property
    def backlog(self) -> int:
        """Return how many published signals were not yet received."""
        return len(self._queue)


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        """Return Unix time in nanoseconds."""
        return time.time_ns()

    def monotonic(self) -> float:
        """Return monotonic seconds."""
        return time.monotonic()
