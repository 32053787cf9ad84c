"""The collector: market feed in, a synchronised book per symbol, events stored in batches."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from algotrade.domain.book import BookSynchronizer, continue_stream
from algotrade.domain.errors import ConcurrencyError
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    SequenceGapDetected,
    TradeReceived,
    with_version,
)
from algotrade.domain.ports import (
    AppendResult,
    Clock,
    EventStore,
    MarketFeed,
    StoredEvent,
    TradeBackfill,
)
from algotrade.domain.streams import (
    StreamKind,
    depth_stream,
    stream_kind,
    stream_symbol,
    trade_stream,
)
from algotrade.domain.values import GapReason, TopOfBook
from algotrade.services.common import Observer, ignore, paced
from algotrade.services.logs import log, warn

OnStored = Callable[[Sequence[StoredEvent]], Awaitable[None]]
T = TypeVar("T")


def _sequence_of(event: Event | None) -> int:
    """Return how far a stored market stream reaches: update id or aggregate trade id."""
    if isinstance(event, DepthDiffReceived):
        return event.final_update_id
    if isinstance(event, BookSnapshotTaken):
        return event.last_update_id
    if isinstance(event, TradeReceived):
        return event.trade_id
    if isinstance(event, SequenceGapDetected):
        return event.received_update_id - 1
    return 0


@contextlib.asynccontextmanager
async def _entered(feed: object) -> AsyncIterator[None]:
    """Enter ``feed`` if it is an async context manager (a live feed), else nothing."""
    if isinstance(feed, contextlib.AbstractAsyncContextManager):
        async with feed:
            yield
    else:
        yield


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator on exit, in the task that used it."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


@dataclass
class _Backfill:
    """Trades of one symbol waiting for the missing ids ``first``..``last`` to be fetched."""

    first: int
    last: int
    deadline: float
    held: list[TradeReceived]
    filled: dict[int, TradeReceived] = field(default_factory=dict)


@dataclass
class CollectorStats:
    """Counters of one collector run."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    gaps: int = 0
    rejected: int = 0
    snapshots: int = 0
    flushes: int = 0
    trade_gaps: int = 0
    backfilled: int = 0
    buffered: int = 0
    """Events handed to the writer and not yet stored."""
    takeovers: int = 0
    """Batches stored after another collector wrote the same symbols first."""


ADAPT = 4.0
"""A batch waits this many times the writes' recent duration (see :class:`Collector`)."""
MIN_WAIT = 0.001
"""Seconds: the shortest wait of an adaptive batch."""


class Collector:
    """Feeds market events through each symbol's :class:`BookSynchronizer` into the store.

    Events are appended in batches bounded in size (``flush_size``) and age
    (``flush_interval`` seconds); ``on_stored`` sees every batch once it is durable. While
    :meth:`run` runs, the batching adapts to the rate: a batch goes once its oldest event
    has waited :data:`ADAPT` times as long as a write takes (a moving average of the
    last five or so; at least :data:`MIN_WAIT`, at most ``flush_interval``), so a quiet
    feed's event is stored within a millisecond or two and a busy one's writes grow into
    larger, cheaper batches, the store busy about a fifth of the time at most. While
    :meth:`run` runs, a writer task appends the batches in order, so the feed keeps flowing
    while the store is slow or away (its adapter retries) until ``max_buffered`` events wait;
    then handing over the next batch waits (back-pressure on the feed), nothing is dropped.

    ``synchronizer`` builds each symbol's synchroniser (the entry points pass the compiled
    one when it was built); ``backfill``, when given, fetches the trades a jump in aggregate
    trade ids skipped (otherwise the jump is recorded as a gap at once).
    """

    def __init__(
        self,
        feed: MarketFeed,
        store: EventStore,
        clock: Clock,
        *,
        speed: float = float("inf"),
        flush_size: int = 2000,
        flush_interval: float = 0.2,
        max_buffered: int = 20_000,
        backfill_timeout: float = 10.0,
        on_stored: OnStored | None = None,
        observe: Observer = ignore,
        synchronizer: Callable[..., BookSynchronizer] = BookSynchronizer,
        backfill: TradeBackfill | None = None,
    ) -> None:
        self.feed = feed
        self.synchronizer = synchronizer
        self.backfill = backfill
        self.observe = observe
        self.store = store
        self.clock = clock
        self.speed = speed
        self.flush_size = flush_size
        self.flush_interval = flush_interval
        self.on_stored = on_stored
        self.max_buffered = max_buffered
        self.backfill_timeout = backfill_timeout
        self._backfills: dict[str, _Backfill] = {}
        self._writer: MemoryObjectSendStream[tuple[list[Event], float]] | None = None
        self.books: dict[str, BookSynchronizer] = {}
        self.stats = CollectorStats()
        self._pending: list[Event] = []
        self._requested: set[str] = set()
        self._trades: dict[str, tuple[int, int]] = {}  # symbol -> (version, last trade id)
        self._last_flush = clock.monotonic()
        self._pending_since = self._last_flush
        self._store_took = 0.0  # seconds a write takes: a moving average (one in five)
        self._adaptive = False  # while run() runs: a flusher task stores what is due
        self._due = anyio.Event()  # set when events start waiting
        self.started_at = clock.monotonic()
        self.last_event_at: float | None = None
        """Monotonic time the last batch of market events arrived (``None``: none yet)."""

    def top(self, symbol: str) -> TopOfBook | None:
        """Return the current top of book of a synchronised symbol."""
        sync = self.books.get(symbol)
        return sync.book.top() if sync is not None and sync.synced else None

    async def run(self, stop: anyio.Event) -> None:
        """Collect until the feed ends or ``stop`` is set; then store everything handed over."""
        capacity = max(2, -(-self.max_buffered // self.flush_size))  # in batches
        send, receive = anyio.create_memory_object_stream[tuple[list[Event], float]](capacity)
        waiting = anyio.CancelScope()  # cancelled by a stop while waiting for the feed
        idle = True
        watcher = anyio.CancelScope()

        async def watch_stop() -> None:
            with watcher:
                while not stop.is_set():
                    with anyio.move_on_after(1.0):
                        await stop.wait()
                    self.note_rejects()  # also while nothing valid arrives to be handled
                if idle:
                    waiting.cancel()

        flusher = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write, receive)
            tg.start_soon(watch_stop)
            tg.start_soon(self._flush_when_due, flusher)
            self._writer = send
            self._adaptive = True
            try:
                for symbol in self.feed.symbols:
                    await self._request(symbol)
                # A live feed runs connections: it is a context manager, entered here. Both
                # generators are closed here too, in this task.
                async with (
                    _entered(self.feed),
                    _closing(self.feed.batches()) as source,
                    _closing(paced(source, self.speed, self.clock)) as batches,
                ):
                    with waiting:
                        async for batch in batches:
                            idle = False
                            await self.handle(batch)
                            if stop.is_set():
                                break
                            idle = True
            finally:
                watcher.cancel()
                flusher.cancel()
                self._adaptive = False
                self.note_rejects()  # the last ones, after the last batch
                with anyio.CancelScope(shield=True):
                    await self.flush()
                    self._writer = None
                    await send.aclose()  # the writer stores what is queued, then ends

    def _wait(self) -> float:
        """Return how long the oldest pending event may wait to be stored."""
        if not self._adaptive:
            return self.flush_interval
        return min(self.flush_interval, max(MIN_WAIT, ADAPT * self._store_took))

    async def _flush_when_due(self, scope: anyio.CancelScope) -> None:
        """Store pending events once their wait is over, also when no new frame comes."""
        with scope:
            while True:
                if not self._pending:
                    self._due = anyio.Event()
                    await self._due.wait()
                    continue
                delay = self._pending_since + self._wait() - self.clock.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
                else:
                    await self.flush()

    async def _write(self, receive: MemoryObjectReceiveStream[tuple[list[Event], float]]) -> None:
        async with receive:
            async for batch, since in receive:
                with anyio.CancelScope(shield=True):  # a batch handed over is stored
                    await self._store(batch, since, queued=True)

    async def handle(self, batch: Sequence[Event]) -> None:
        """Apply one batch of market events; flush when a bound is reached.

        Events go to ``self._pending`` itself, never to an alias of it: the flusher task
        may hand the list over at any ``await`` here, and what follows goes to the next.
        """
        stats = self.stats
        stats.received += len(batch)
        self.last_event_at = self.clock.monotonic()
        if not self._pending:
            self._pending_since = self.last_event_at
        for event in batch:
            if isinstance(event, DepthDiffReceived):
                sync = self.books.get(event.symbol) or await self._sync(event)
                out = sync.on_diff(event)
            elif isinstance(event, BookSnapshotTaken):
                sync = self.books.get(event.symbol) or await self._sync(event)
                out = sync.on_snapshot(event)
                stats.snapshots += 1
                if sync.synced:
                    self._requested.discard(event.symbol)
            elif isinstance(event, TradeReceived):
                await self._on_trade(event)
                continue
            else:
                continue
            if out:
                self._pending.extend(out)
                for produced in out:
                    if isinstance(produced, SequenceGapDetected):
                        stats.gaps += 1
                        warn(
                            "collector",
                            "book out of sync",
                            symbol=produced.symbol,
                            reason=produced.reason,
                            expected=produced.expected_update_id,
                            received=produced.received_update_id,
                        )
            if sync.needs_snapshot and event.symbol not in self._requested:
                await self._request(event.symbol)
        now = self.clock.monotonic()
        for symbol in [s for s, w in self._backfills.items() if now >= w.deadline]:
            await self._release(symbol)
        self.note_rejects()
        if not self._pending:
            return
        now = self.clock.monotonic()
        if (
            len(self._pending) >= self.flush_size
            or now - (self._pending_since if self._adaptive else self._last_flush) >= self._wait()
        ):
            await self.flush()
        elif self._adaptive:
            self._due.set()  # the flusher stores them when due

    def note_rejects(self) -> None:
        """Count and log (with its raw text) every input the feed set aside since last time."""
        for reject in self.feed.drain_rejects():
            self.stats.rejected += 1
            warn(
                "collector",
                "input rejected",
                source=reject.source,
                where=reject.where,
                reason=reject.reason,
                raw=reject.raw,
            )

    async def flush(self) -> None:
        """Hand every pending event to the writer (or, outside :meth:`run`, store them now)."""
        self._last_flush = self.clock.monotonic()
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        since = self._pending_since
        if self._writer is None:
            await self._store(batch, since)
            return
        self.stats.buffered += len(batch)
        try:
            await self._writer.send((batch, since))  # waits while max_buffered wait: back-pressure
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.stats.buffered -= len(batch)  # the writer is gone (a failure): store it here
            await self._store(batch, since)

    async def _store(self, batch: list[Event], since: float, *, queued: bool = False) -> None:
        """Store one batch; ``since`` is when its oldest event reached the collector."""
        started = self.clock.monotonic()
        try:
            result = await self.store.append(batch)
        except ConcurrencyError as e:
            kind = stream_kind(e.stream)
            if kind is None or not kind.market:
                raise
            result = await self._store_rebased(batch)
        took = self.clock.monotonic() - started  # a lock wait included: the store's pace
        self._store_took += (took - self._store_took) / 5
        if queued:
            self.stats.buffered -= len(batch)
        self.stats.stored += len(result.stored)
        self.stats.duplicates += result.duplicates
        if batch:  # on this machine's clock: an event's receive_ts is the data's (a replay's)
            self.observe("frame_to_stored_seconds", self.clock.monotonic() - since)
        self.stats.flushes += 1
        if self.on_stored is not None and result.stored:
            await self.on_stored(result.stored)

    async def _store_rebased(self, batch: list[Event]) -> AppendResult:
        """Store a batch after another collector wrote the same symbols first.

        The append that met the other writer stored nothing. Each market stream is read
        again and the batch continues it: depth events through :func:`continue_stream`
        (what it covers is dropped, a jump past it, such as this collector's snapshot
        ahead of it, is a recorded gap, a gap the other's data fills is dropped), trades
        after its last trade id. The events get the stream's next versions explicitly, so
        a writer slipping in between makes this append fail too, and it starts over
        (versions left to the store would let the two interleave). Then each symbol's
        numbering continues from what is stored.
        """
        self.stats.takeovers += 1
        streams = {e.stream for e in batch if (k := stream_kind(e.stream)) is not None and k.market}
        for attempt in range(1, 101):
            last = {stream: await self.store.last_event(stream) for stream in streams}
            rebased = self._continued(batch, last)
            try:
                result = await self.store.append(rebased)
            except ConcurrencyError:
                if attempt in (10, 30, 60, 100):  # a stretch worth seeing in the logs
                    warn("collector", "another collector keeps writing in between",
                         streams=",".join(sorted(streams)), attempts=attempt)  # fmt: skip
                await anyio.sleep(min(0.01 * attempt, 0.5))  # another writer in between
                continue
            break
        else:
            raise ConcurrencyError(",".join(sorted(streams)), 0)
        for stream in streams:
            stored = await self.store.last_event(stream)
            if stored is None:
                continue
            kind, symbol = stream_kind(stream), stream_symbol(stream)
            if kind is StreamKind.DEPTH and symbol in self.books:
                sync = self.books[symbol]
                sync.version = stored.version
                sync.stored_through = max(sync.stored_through, _sequence_of(stored))
            elif kind is StreamKind.TRADES and symbol in self._trades:
                _, last_id = self._trades[symbol]
                self._trades[symbol] = (stored.version, max(last_id, _sequence_of(stored)))
        if self.stats.takeovers == 1 or self.stats.takeovers % 1000 == 0:  # not every batch
            log("collector", "another collector writes these symbols: continuing its streams",
                streams=",".join(sorted(streams)), times=self.stats.takeovers)  # fmt: skip
        return result

    @staticmethod
    def _continued(batch: list[Event], last: dict[str, Event | None]) -> list[Event]:
        """Return ``batch`` continuing the stored streams whose last events are ``last``."""
        depth: dict[str, list[Event]] = {}
        for event in batch:
            if stream_kind(event.stream) is StreamKind.DEPTH:
                depth.setdefault(event.stream, []).append(event)
        versions = {stream: e.version if e is not None else 0 for stream, e in last.items()}
        out: list[Event] = []

        def numbered(event: Event) -> Event:
            versions[event.stream] += 1
            return with_version(event, versions[event.stream])

        for event in batch:
            if event.stream not in last:
                out.append(event)
            elif stream_kind(event.stream) is StreamKind.DEPTH:
                # each depth stream goes once, where its first event was
                events = depth.pop(event.stream, None)
                if events is not None:
                    through = _sequence_of(last[event.stream])
                    out.extend(numbered(e) for e in continue_stream(events, through))
            elif _sequence_of(event) > _sequence_of(last[event.stream]):
                out.append(numbered(event))  # a trade after the last one stored
        return out

    async def _sync(self, event: DepthDiffReceived | BookSnapshotTaken) -> BookSynchronizer:
        """Create a symbol's book, continuing the numbering of its stored depth stream."""
        last = await self.store.last_event(depth_stream(event.symbol))
        version, stored_through = 0, 0
        if last is not None:
            version = last.version
            if isinstance(last, DepthDiffReceived):
                stored_through = last.final_update_id
            elif isinstance(last, BookSnapshotTaken):
                stored_through = last.last_update_id
            elif isinstance(last, SequenceGapDetected):
                stored_through = min(last.expected_update_id, last.received_update_id) - 1
        sync = self.synchronizer(
            event.symbol, exchange=event.exchange, version=version, stored_through=stored_through
        )
        self.books[event.symbol] = sync
        return sync

    async def _on_trade(self, event: TradeReceived) -> None:
        """Store a trade in id order; a jump in aggregate trade ids is backfilled or recorded."""
        symbol = event.symbol
        wait = self._backfills.get(symbol)
        if wait is not None:
            if wait.first <= event.trade_id <= wait.last:
                wait.filled[event.trade_id] = event
                if len(wait.filled) == wait.last - wait.first + 1:
                    await self._release(symbol)
            elif event.trade_id > wait.last:
                wait.held.append(event)
            return
        version, last_id = self._trades.get(symbol) or await self._trade_state(event)
        if event.trade_id <= last_id:
            return
        if last_id and event.trade_id > last_id + 1:
            if self.backfill is not None:
                self._backfills[symbol] = _Backfill(
                    last_id + 1,
                    event.trade_id - 1,
                    self.clock.monotonic() + self.backfill_timeout,
                    held=[event],
                )
                await self.backfill.backfill_trades(symbol, last_id + 1, event.trade_id - 1)
                return
            self._trade_gap(event, last_id + 1, event.trade_id)
            version, last_id = self._trades[symbol]
        self._trades[symbol] = (version + 1, event.trade_id)
        self._pending.append(with_version(event, version + 1))

    def _trade_gap(self, at: TradeReceived, expected: int, received: int) -> None:
        version, last_id = self._trades[at.symbol]
        self.stats.trade_gaps += 1
        self._pending.append(
            SequenceGapDetected(
                stream=trade_stream(at.symbol), version=version + 1,
                exchange_ts=at.exchange_ts, receive_ts=at.receive_ts, exchange=at.exchange,
                symbol=at.symbol, reason=GapReason.GAP,
                expected_update_id=expected, received_update_id=received,
            )
        )  # fmt: skip
        self._trades[at.symbol] = (version + 1, last_id)
        warn("collector", "aggregate trade ids missing", symbol=at.symbol, expected=expected,
            received=received)  # fmt: skip

    async def _release(self, symbol: str) -> None:
        """End a backfill: store what came, in id order, record what did not, go on."""
        wait = self._backfills.pop(symbol)
        missing_from: int | None = None
        for trade_id in range(wait.first, wait.last + 2):
            found = wait.filled.get(trade_id)
            if trade_id <= wait.last and found is None:
                if missing_from is None:
                    missing_from = trade_id
                continue
            if missing_from is not None:
                first_held = found or (wait.held[0] if wait.held else None)
                if first_held is not None:
                    self._trade_gap(first_held, missing_from, trade_id)
                missing_from = None
            if found is not None:
                version, _ = self._trades[symbol]
                self._trades[symbol] = (version + 1, trade_id)
                self._pending.append(with_version(found, version + 1))
                self.stats.backfilled += 1
        version, _ = self._trades[symbol]
        self._trades[symbol] = (version, wait.last)
        for held in sorted(wait.held, key=lambda t: t.trade_id):
            await self._on_trade(held)

    async def _trade_state(self, event: TradeReceived) -> tuple[int, int]:
        last = await self.store.last_event(trade_stream(event.symbol))
        if isinstance(last, TradeReceived):
            state = (last.version, last.trade_id)
        elif isinstance(last, SequenceGapDetected):
            state = (last.version, last.received_update_id - 1)
        else:
            state = (0, 0)
        self._trades[event.symbol] = state
        return state

    async def _request(self, symbol: str) -> None:
        self._requested.add(symbol)
        await self.feed.request_snapshot(symbol)
