"""The processor: stored market events in, bars and signals stored, then published.

Restart-safe: each stored bar records the position of the last market event it covers,
and the tracking record written with bars and signals is the earliest such position over
all symbols. A restarted processor resumes there, reloads each symbol's bars (warming its
strategy up and re-deriving the same signal ids, which the store skips as duplicates) and
ignores market events already covered by them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import anyio

from algotrade.domain.errors import AlgotradeError, ConcurrencyError, MessagingError
from algotrade.domain.events import (
    BarClosed,
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    SignalEmitted,
    TradeReceived,
)
from algotrade.domain.ports import (
    BarHistory,
    Clock,
    EventStore,
    SignalPublisher,
    StoredEvent,
    Tracking,
)
from algotrade.domain.processing import Processor, SymbolPipeline
from algotrade.domain.streams import bar_stream, stream_kind
from algotrade.services.common import Observer, ignore
from algotrade.services.logs import log, warn
from algotrade.services.views import signal_view

MARKET_TYPES: tuple[type[Event], ...] = (DepthDiffReceived, BookSnapshotTaken, TradeReceived)


@dataclass
class ProcessorStats:
    """Counters of one processor run."""

    events: int = 0
    bars: int = 0
    signals: int = 0
    duplicates: int = 0
    last_position: int = 0
    takeovers: int = 0
    off_clock_before: int = 0  # events kept out of bars by pipelines since dropped

    def off_clock(self, pipelines: Iterable[SymbolPipeline]) -> int:
        """Return the market events kept out of bars off their stream's clock, in all."""
        return self.off_clock_before + sum(p.off_clock for p in pipelines)


class ProcessorService:
    """Runs the pure :class:`Processor` over stored events and stores what it produces."""

    def __init__(
        self,
        store: EventStore,
        processor: Processor,
        *,
        clock: Clock,
        publisher: SignalPublisher | None = None,
        tracking_name: str | None = None,
        on_signals: Callable[[Sequence[SignalEmitted]], None] | None = None,
        observe: Observer = ignore,
        history: BarHistory | None = None,
    ) -> None:
        self.store = store
        self.history = history
        self.clock = clock
        self.observe = observe
        self.observe_data: Observer = observe
        """Records a latency read from the data's own times (see ``observe_data_latency``)."""
        self.processor = processor
        self.publisher = publisher
        self.on_signals = on_signals
        self.stats = ProcessorStats()
        self.tracking_name = tracking_name or self._default_tracking_name()
        self._first_position: dict[str, int] = {}
        self._position: int | None = None  # how far catch_up got, read once from tracking

    def _default_tracking_name(self) -> str:
        probe = self.processor.strategy_factory()
        params = ",".join(f"{k}={v}" for k, v in probe.params)
        return f"processor:{self.processor.interval.name}:{probe.name}:{params}"

    async def handle(self, batch: Sequence[StoredEvent]) -> list[Event]:
        """Process one batch of stored market events; store and publish the results."""
        read_at = self.clock.monotonic()
        produced: list[Event] = []
        pipelines = self.processor.pipelines
        for stored in batch:
            event = stored.event
            symbol = getattr(event, "symbol", None)
            if symbol is None:
                continue
            if symbol not in pipelines:
                produced.extend(await self._restore(symbol, stored.position, event.exchange_ts))
            produced.extend(self.processor.on_event(event, stored.position))
        self.stats.events += len(batch)
        if batch:
            self.stats.last_position = batch[-1].position
        if produced:
            await self._store(produced, read_at)
        return produced

    async def _restore(self, symbol: str, position: int, first_ts: int) -> list[Event]:
        pipeline = self.processor.pipeline(symbol)
        bars = await self.store.read_stream(bar_stream(symbol, self.processor.interval.name))
        stored = [b for b in bars if isinstance(b, BarClosed)]
        await self._warm_up(pipeline, stored[0].open_time if stored else first_ts)
        signals = pipeline.restore(stored)
        self._first_position[symbol] = position - 1
        if bars:
            log(
                "processor",
                "resumed",
                symbol=symbol,
                bars=len(bars),
                after_position=pipeline.resume_position,
            )
        return list(signals)

    async def _warm_up(self, pipeline: SymbolPipeline, first_ts: int) -> None:
        """Feed the strategy the history before the first bar it will see (none stored:
        the bar of ``first_ts``), so its averages are defined from the first bar on.

        The same bars come back after a restart (history does not change), so restored
        signals keep their ids. Without history (no source, unreachable, an interval the
        exchange lacks) the strategy warms up on live bars, as before.
        """
        need = int(getattr(pipeline.strategy, "warmup", 0) or 0)
        if self.history is None or need <= 0:
            return
        interval = self.processor.interval
        before = first_ts - first_ts % interval.nanos
        try:
            bars = await self.history.bars_before(pipeline.symbol, interval, before, need)
        except MessagingError as e:
            warn("processor", "no warm-up history: the strategy warms up on live bars",
                 symbol=pipeline.symbol, interval=interval.name, error=e)  # fmt: skip
            return
        pipeline.warm_up(bars)
        log("processor", "warmed up from history", symbol=pipeline.symbol,
            interval=interval.name, bars=len(bars), wanted=need)  # fmt: skip

    def checkpoint(self) -> int:
        """Return the position before which every event is covered by a stored bar."""
        marks = [
            self._mark(symbol, pipeline) for symbol, pipeline in self.processor.pipelines.items()
        ]
        return min(marks) if marks else 0

    def _mark(self, symbol: str, pipeline: SymbolPipeline) -> int:
        last = pipeline.bars_last_position
        return last if last else self._first_position.get(symbol, 0)

    async def _store(self, produced: list[Event], read_at: float) -> None:
        """Store what a batch produced; ``read_at``: when the batch was read (monotonic)."""
        try:
            result = await self.store.append(
                produced, tracking=Tracking(self.tracking_name, self.checkpoint())
            )
        except ConcurrencyError as e:
            kind = stream_kind(e.stream)
            if kind is None or not kind.derived:
                raise
            self._rejoin()
            return
        self.stats.duplicates += result.duplicates
        new_signals = []
        for stored in result.stored:
            if isinstance(stored.event, BarClosed):
                self.stats.bars += 1
            elif isinstance(stored.event, SignalEmitted):
                self.stats.signals += 1
                new_signals.append(stored.event)
                log_signal(stored.event)
                self.observe("event_to_signal_seconds", self.clock.monotonic() - read_at)
                self.observe_data(
                    "received_to_signal_seconds",
                    (self.clock.now_ns() - stored.event.receive_ts) / 1e9,
                )
        if new_signals and self.publisher is not None:
            await self.publisher.publish(new_signals)
        if new_signals and self.on_signals is not None:
            self.on_signals(new_signals)

    def _rejoin(self) -> None:
        """Another processor stored bars or signals first: start again from the store.

        Nothing of the refused append was stored. As after a restart, the next batch reloads
        the checkpoint and each symbol's stored bars (warming its strategy up and re-deriving
        the same signal ids, which the store skips), so both processors keep storing one
        series: a standby takes over where the other stopped.
        """
        self.stats.off_clock_before = self.stats.off_clock(self.processor.pipelines.values())
        self.processor.pipelines.clear()
        self._first_position.clear()
        self._position = None
        self.stats.takeovers += 1
        if self.stats.takeovers == 1 or self.stats.takeovers % 1000 == 0:  # not every batch
            log("processor", "another processor stores these series: continuing from the store",
                times=self.stats.takeovers)  # fmt: skip

    async def lag(self) -> int:
        """Return how many stored positions this processor has yet to look at (0: none of
        them is a market event)."""
        position = self._position or 0
        if not await self.store.read_all(position, limit=1, types=MARKET_TYPES):
            return 0
        return await self.store.head() - position

    async def catch_up(self, stop: anyio.Event | None = None, *, batch_size: int = 5000) -> int:
        """Process every market event stored so far (or until ``stop``); return how many."""
        if self._position is None:
            self._position = await self.store.tracking_position(self.tracking_name)
        position = self._position
        handled = 0
        # Bars and strategies read the top of book, never the levels: not decoding them
        # makes catching up about 1.5 times faster (docs/benchmarks.md).
        while batch := await self.store.read_all(
            position, limit=batch_size, types=MARKET_TYPES, levels=False
        ):
            await self.handle(batch)
            if self._position is None:  # rejoined another processor: the next call reloads
                return handled + len(batch)
            position = self._position = batch[-1].position
            handled += len(batch)
            await anyio.lowlevel.checkpoint()  # let signals and other tasks in between batches
            if stop is not None and stop.is_set():
                break
        return handled

    async def follow(self, stop: anyio.Event, *, idle: float = 0.2) -> None:
        """Process stored market events as they arrive, until ``stop`` is set.

        Between catch-ups it waits on the store (``EventStore.wait``: the SQLite and
        MongoDB stores poll the head every few milliseconds, the memory store is woken),
        so a new event is processed as soon as it is stored; ``stop`` is looked at
        every ``idle`` seconds at most.
        """
        while not stop.is_set():
            head = await self.store.head()  # before reading: what comes after wakes us
            if await self.catch_up(stop):
                continue
            await self.store.wait(head, idle)


RECORD_EVERY = 1.0
"""Seconds: how often at most the relay records how far it published (a restart
publishes again what it had not recorded: at least once, one order each)."""
_SHORT_WAIT = 0.05
"""Seconds: a relay wait this short does not watch ``stop`` (it is seen when the wait ends)."""


class OutboxRelay:
    """Publishes every stored signal not yet published, then records how far it got.

    The processor stores a signal first; this relay publishes it afterwards. A crash
    between the two re-publishes on restart (at least once); the trader's order ids make
    the repeat harmless.
    """

    def __init__(
        self,
        store: EventStore,
        publisher: SignalPublisher,
        *,
        clock: Clock,
        name: str = "outbox",
        batch_size: int = 500,
        idle: float = 0.02,
        observe: Observer = ignore,
    ) -> None:
        self.store = store
        self.clock = clock
        self.observe = observe
        self.backlog = 0
        """Signals stored and not yet published, as far as this relay knows."""
        self.pending_since: float | None = None
        """Monotonic time the backlog last went from empty to not empty."""
        self._stored_at: dict[str, float] = {}
        self.publisher = publisher
        self.name = name
        self.batch_size = batch_size
        self.idle = idle
        self.published = 0
        self._position: int | None = None  # last published position, read once
        self._recorded: int | None = None  # the position last recorded in the store
        self._recorded_at = float("-inf")  # monotonic time of that record
        self._kick = anyio.Event()

    def notify(self, signals: Sequence[SignalEmitted] = ()) -> None:
        """Wake the relay now: ``signals`` were just stored (it also polls every ``idle``)."""
        now = self.clock.monotonic()
        for signal in signals:
            self._stored_at[signal.signal_id] = now
        self._grow(len(signals))
        self._kick.set()

    def _grow(self, count: int) -> None:
        if count and not self.backlog:
            self.pending_since = self.clock.monotonic()
        self.backlog += count

    async def relay_once(self, *, record: bool = True) -> int:
        """Publish the next batch of unpublished signals; return how many.

        ``record=False`` leaves how far it got to be recorded later (:meth:`record`), so
        that signals coming one after another are not each held up by a write of the
        store; a crash before the record publishes them again on restart (at least once).
        """
        if self._position is None:
            self._position = self._recorded = await self.store.tracking_position(self.name)
        found = await self.store.read_all(
            self._position, limit=self.batch_size, types=(SignalEmitted,)
        )
        signals = [s.event for s in found if isinstance(s.event, SignalEmitted)]
        if not found:
            self.backlog, self.pending_since = 0, None
            self._stored_at.clear()
            return 0
        self._grow(max(0, len(signals) - self.backlog))
        await self.publisher.publish(signals)
        now = self.clock.monotonic()  # published: the trader may act now
        for signal in signals:
            stored_at = self._stored_at.pop(signal.signal_id, None)
            if stored_at is not None:
                self.observe("signal_to_published_seconds", now - stored_at)
        self._position = found[-1].position
        if record:
            await self.record()
        self.published += len(signals)
        now = self.clock.monotonic()
        self.backlog = max(0, self.backlog - len(signals))
        self.pending_since = now if self.backlog else None
        return len(signals)

    async def record(self) -> None:
        """Record how far the relay published, if further than recorded."""
        if self._position is not None and self._position != self._recorded:
            await self.store.append([], tracking=Tracking(self.name, self._position))
            self._recorded = self._position
        self._recorded_at = self.clock.monotonic()

    async def run(self, stop: anyio.Event) -> None:
        """Relay until ``stop`` is set and nothing is left; survive a bus outage. How far
        it got is recorded when nothing more is waiting, at most every
        :data:`RECORD_EVERY` seconds (a store write between two bursts of signals would
        hold up the second), and before it returns."""
        backoff = self.idle
        while True:
            self._kick = anyio.Event()  # before reading: a notify from now on is not missed
            try:
                if await self.relay_once(record=False):
                    backoff = self.idle
                    continue
                if stop.is_set() or self.clock.monotonic() - self._recorded_at >= RECORD_EVERY:
                    await self.record()
            except MessagingError as e:
                warn("processor", "signal bus unavailable, retrying", error=e, retry_in=backoff)
                if stop.is_set():
                    with contextlib.suppress(AlgotradeError):
                        await self.record()  # what went out before the outage
                    return  # the unpublished signals stay in the outbox for the next start
                backoff = min(max(backoff * 2, 0.1), 5.0)
            if stop.is_set():
                return
            await self._wait(backoff, stop)

    async def _wait(self, timeout: float, stop: anyio.Event) -> None:
        """Wait for a notify, ``stop`` or ``timeout``. A short wait (the polling interval,
        at most 50 ms) waits for the notify alone and sees ``stop`` when it ends: no task
        group to set up and tear down on every wake (about 150 us here), so a signal is
        relayed sooner (p50 and p99 latency measured lower, bench/signals.py)."""
        with anyio.move_on_after(timeout):
            if timeout <= _SHORT_WAIT:
                await self._kick.wait()
                return
            async with anyio.create_task_group() as tg:

                async def wake_on(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(wake_on, stop)
                tg.start_soon(wake_on, self._kick)


def log_signal(signal: SignalEmitted) -> None:
    """Log one signal as one line (one JSON object off a terminal), with every field."""
    log("processor", "signal", **signal_view(signal))
