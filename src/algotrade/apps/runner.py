"""Composition roots: settings, ``bootstrap`` functions and the main loop of each command.

Each ``bootstrap_*`` builds real adapters only for the arguments left ``None``; tests call
the same functions with in-memory fakes.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from redis.asyncio import Redis

from algotrade.adapters.binance.feed import DEFAULT_REST_URL, DEFAULT_WS_URL, BinanceFeed
from algotrade.adapters.memory import InMemorySignalBus, SystemClock
from algotrade.adapters.redis import (
    DEAD_LETTER_STREAM,
    SIGNAL_GROUP,
    SIGNAL_STREAM,
    RedisSignalConsumer,
    RedisSignalPublisher,
)
from algotrade.adapters.replay import ReplayFeed
from algotrade.adapters.store_bus import PaperGateway, StoreQuoteSource, StoreSignalConsumer
from algotrade.adapters.synthetic import SyntheticFeed, SyntheticStart
from algotrade.apps.collector import Collector
from algotrade.apps.common import (
    Progress,
    SourceSpec,
    log,
    open_store,
    peak_rss_mib,
    stop_on_signals,
)
from algotrade.apps.processor import OutboxRelay, ProcessorService
from algotrade.apps.trader import TraderService
from algotrade.domain.bars import Interval
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    TopOfBook,
    TradeReceived,
    depth_stream,
    trade_stream,
)
from algotrade.domain.ports import (
    AppendResult,
    Clock,
    EventStore,
    MarketFeed,
    SignalConsumer,
    StoredEvent,
    Tracking,
)
from algotrade.domain.processing import Processor
from algotrade.domain.strategy import SmaCrossover

SYNTHETIC_STEP_NS = 100_000_000
SYNTHETIC_TICK = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """Where market data comes from and how fast it plays."""

    source: SourceSpec
    symbols: tuple[str, ...] = ("BTCUSDT",)
    speed: float = math.inf
    seed: int = 42
    binance_ws_url: str = DEFAULT_WS_URL
    binance_rest_url: str = DEFAULT_REST_URL


@dataclass(frozen=True, slots=True)
class StrategySettings:
    """The SMA crossover's parameters."""

    interval: Interval = field(default_factory=lambda: Interval.parse("1d"))
    short: int = 50
    long: int = 200

    def processor(self) -> Processor:
        """Return a fresh pure processor for these settings."""
        SmaCrossover(self.short, self.long)  # validates the periods once, up front
        return Processor(self.interval, lambda: SmaCrossover(self.short, self.long))


@dataclass(frozen=True, slots=True)
class TradingSettings:
    """The paper trader's order size and fee."""

    quantity: Decimal = Decimal("0.01")
    fee: Decimal = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where signals travel when a Redis URL is given, and how the trader group behaves."""

    url: str
    stream: str = SIGNAL_STREAM
    group: str = SIGNAL_GROUP
    consumer: str | None = None
    maxlen: int = 100_000
    claim_idle: float = 30.0
    max_deliveries: int = 5
    dead_letters: str = DEAD_LETTER_STREAM

    def client(self) -> Redis:
        """Return a client for the URL (no I/O until first used); replies decoded to text."""
        return Redis.from_url(self.url, decode_responses=True)

    def publisher(self, client: Redis) -> RedisSignalPublisher:
        """Return the signal publisher."""
        return RedisSignalPublisher(client, stream=self.stream, maxlen=self.maxlen)

    def consumer_for(self, client: Redis) -> RedisSignalConsumer:
        """Return this process's member of the trader group."""
        return RedisSignalConsumer(
            client,
            stream=self.stream,
            group=self.group,
            consumer=self.consumer,
            dead_letters=self.dead_letters,
            claim_idle=self.claim_idle,
            max_deliveries=self.max_deliveries,
        )


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Settings of ``algotrade run``."""

    feed: FeedSettings
    strategy: StrategySettings = field(default_factory=StrategySettings)
    trading: TradingSettings = field(default_factory=TradingSettings)
    store: str = "algotrade.db"
    depth_retention: float = 7 * 86400.0
    duration: float | None = None
    progress: bool = True
    redis: RedisSettings | None = None


async def synthetic_starts(store: EventStore, symbols: Sequence[str]) -> dict[str, SyntheticStart]:
    """Return where each symbol's synthetic walk continues the series already stored."""
    starts = {}
    for symbol in symbols:
        last = await store.last_event(depth_stream(symbol))
        if not isinstance(last, DepthDiffReceived | BookSnapshotTaken) or last.top is None:
            continue
        next_id = (
            last.final_update_id if isinstance(last, DepthDiffReceived) else last.last_update_id
        ) + 1
        trade = await store.last_event(trade_stream(symbol))
        starts[symbol] = SyntheticStart(
            time_ns=last.exchange_ts + SYNTHETIC_STEP_NS,
            update_id=next_id,
            price=last.top.mid.quantize(SYNTHETIC_TICK),
            trade_id=trade.trade_id + 1 if isinstance(trade, TradeReceived) else 1,
        )
    return starts


async def make_feed(settings: FeedSettings, store: EventStore) -> MarketFeed:
    """Build the market feed the settings name."""
    if settings.source.kind == "replay":
        assert settings.source.path is not None
        return ReplayFeed(settings.source.path, symbols=settings.symbols)
    if settings.source.kind == "binance":
        return BinanceFeed(
            settings.symbols,
            SystemClock(),
            ws_url=settings.binance_ws_url,
            rest_url=settings.binance_rest_url,
        )
    starts = await synthetic_starts(store, settings.symbols)
    if starts:
        log("collector", "continuing the stored synthetic series", symbols=",".join(starts))
    return SyntheticFeed(
        settings.symbols,
        seed=settings.seed,
        starts=starts,
        step=SYNTHETIC_STEP_NS,
        tick=SYNTHETIC_TICK,
    )


class CollectorQuotes:
    """Quotes straight from the collector's synchronised books (in-process ``run``)."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    async def latest(self, symbol: str) -> TopOfBook | None:
        """Return the collector's current top of book."""
        return self.collector.top(symbol)


@dataclass
class Pipeline:
    """Everything ``algotrade run`` wires together."""

    store: EventStore
    feed: MarketFeed
    collector: Collector
    processor: ProcessorService
    trader: TraderService
    bus: InMemorySignalBus | None
    clock: Clock
    relay: OutboxRelay | None = None
    redis: Redis | None = None


async def bootstrap_run(
    settings: RunSettings,
    *,
    store: EventStore | None = None,
    feed: MarketFeed | None = None,
    clock: Clock | None = None,
) -> Pipeline:
    """Wire collector, processor and trader in one process on one store.

    Signals go to the trader over an in-process bus, or through Redis (an outbox relay
    publishes them, the trader reads them in a consumer group) when settings name Redis.
    """
    clock = clock or SystemClock()
    store = store or open_store(settings.store, depth_retention=settings.depth_retention)
    feed = feed or await make_feed(settings.feed, store)
    bus: InMemorySignalBus | None = None
    relay: OutboxRelay | None = None
    client: Redis | None = None
    consumer: SignalConsumer
    if settings.redis is None:
        bus = consumer = InMemorySignalBus()
    else:
        client = settings.redis.client()
        relay = OutboxRelay(
            store, settings.redis.publisher(client), name=outbox_name(settings.redis)
        )
        consumer = settings.redis.consumer_for(client)
    processor = ProcessorService(
        store,
        settings.strategy.processor(),
        publisher=bus,
        on_signals=relay.notify if relay is not None else None,
    )

    async def on_stored(batch: Sequence[StoredEvent]) -> None:
        await processor.handle(batch)

    collector = Collector(feed, store, clock, speed=settings.feed.speed, on_stored=on_stored)
    gateway = PaperGateway(CollectorQuotes(collector), fee_rate=settings.trading.fee)
    trader = TraderService(store, consumer, gateway, quantity=settings.trading.quantity)
    return Pipeline(store, feed, collector, processor, trader, bus, clock, relay, client)


def outbox_name(redis: RedisSettings) -> str:
    """Return the tracking name of the outbox relay for a signal stream."""
    return f"outbox:{redis.stream}"


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "-"


def render_run(p: Pipeline, elapsed: float) -> str:
    """Return the one-line progress of a run."""
    c, pr, t = p.collector.stats, p.processor.stats, p.trader.stats
    return (
        f"[run] {elapsed:6.1f}s events={c.received:,} ({_rate(c.received, elapsed)})"
        f" stored={c.stored:,} gaps={c.gaps} bars={pr.bars:,} signals={pr.signals}"
        f" orders={t.orders}"
    )


async def summary(p: Pipeline, elapsed: float) -> dict[str, Any]:
    """Return the end-of-run figures."""
    c, pr, t = p.collector.stats, p.processor.stats, p.trader.stats
    positions = {}
    for symbol in p.collector.books:
        pos = await p.trader.position(symbol)
        top = p.collector.top(symbol)
        mark = top.mid if top is not None else None
        unrealised = pos.unrealised_pnl(mark)
        positions[symbol] = {
            "quantity": str(pos.quantity),
            "average_price": str(pos.average_price),
            "mark": None if mark is None else str(mark),
            "realised_pnl": str(pos.realised_pnl),
            "unrealised_pnl": str(unrealised),
            "fees_paid": str(pos.fees_paid),
            "net_pnl": str(pos.realised_pnl + unrealised - pos.fees_paid),
        }
    return {
        "seconds": round(elapsed, 3),
        "peak_rss_mib": peak_rss_mib(),
        "events": c.received,
        "events_per_second": round(c.received / elapsed) if elapsed > 0 else None,
        "stored": c.stored,
        "duplicates": c.duplicates,
        "gaps": c.gaps,
        "rejected_inputs": c.rejected,
        "bars": pr.bars,
        "signals": pr.signals,
        "orders": t.orders,
        "filled": t.filled,
        "rejected_orders": t.rejected,
        "positions": positions,
    }


async def run_pipeline(p: Pipeline, settings: RunSettings) -> dict[str, Any]:
    """Run until the source ends, the duration passes or a signal arrives; then drain."""
    stop = anyio.Event()
    trader_stop = anyio.Event()
    started = p.clock.monotonic()
    progress = Progress(lambda e: render_run(p, e), p.clock)

    def on_signal(name: str) -> None:
        log("run", f"{name} received: stopping after flushing")

    async with anyio.create_task_group() as tg:
        await tg.start(stop_on_signals, stop, on_signal)
        if settings.progress:
            tg.start_soon(progress.run)
        if settings.duration is not None:
            tg.start_soon(_stop_after, settings.duration, stop)
        drained = anyio.Event()
        relay_stop, relayed = anyio.Event(), anyio.Event()
        tg.start_soon(lambda: p.trader.run(trader_stop, drained=drained))
        if p.relay is not None:
            tg.start_soon(_run_then_set, p.relay.run, relay_stop, relayed)
        else:
            relayed.set()
        try:
            await p.collector.run(stop)
        finally:
            # Drain in order: outbox published, then every published signal acted upon.
            relay_stop.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                await relayed.wait()
            trader_stop.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                await drained.wait()
            tg.cancel_scope.cancel()
    elapsed = p.clock.monotonic() - started
    if settings.progress:
        progress.show()
        progress.finish()
    result = await summary(p, elapsed)
    await p.store.close()
    if p.redis is not None:
        await p.redis.aclose()
    return result


async def _run_then_set(
    run: Callable[[anyio.Event], Awaitable[None]], stop: anyio.Event, done: anyio.Event
) -> None:
    try:
        await run(stop)
    finally:
        done.set()


async def _stop_after(seconds: float, stop: anyio.Event) -> None:
    await anyio.sleep(seconds)
    stop.set()


# --- the separate services ---------------------------------------------------------------


async def _serve(
    app: str,
    work: Callable[[anyio.Event], Awaitable[None]],
    render: Callable[[float], str],
    clock: Clock,
    *,
    duration: float | None = None,
) -> None:
    """Run one service's work with signal handling, a progress line and an optional limit."""
    stop = anyio.Event()
    progress = Progress(render, clock)
    async with anyio.create_task_group() as tg:
        await tg.start(stop_on_signals, stop, lambda n: log(app, f"{n}: stopping"))
        tg.start_soon(progress.run)
        if duration is not None:
            tg.start_soon(_stop_after, duration, stop)
        await work(stop)
        tg.cancel_scope.cancel()
    progress.show()
    progress.finish()


def _feed_line(feed: MarketFeed) -> str:
    """Return the live feed's part of the collector's progress line."""
    if not isinstance(feed, BinanceFeed):
        return ""
    f = feed.stats
    return (
        f" connections={f.connections} reconnects={f.reconnects} silences={f.silences}"
        f" snapshots={f.snapshots} skew={f.clock_skew_ms:.0f}ms"
    )


def _feed_summary(feed: MarketFeed) -> dict[str, Any]:
    """Return the live feed's figures for the collector's summary."""
    if not isinstance(feed, BinanceFeed):
        return {}
    f = feed.stats
    return {
        "connections": f.connections,
        "reconnects": f.reconnects,
        "silences": f.silences,
        "snapshots": f.snapshots,
        "clock_skew_ms": round(f.clock_skew_ms, 1),
    }


async def run_collector(
    feed_settings: FeedSettings,
    store_url: str,
    duration: float | None,
    *,
    depth_retention: float = 7 * 86400.0,
) -> dict[str, Any]:
    """Run the collector alone: feed into the store."""
    clock = SystemClock()
    store = open_store(store_url, depth_retention=depth_retention)
    try:
        feed = await make_feed(feed_settings, store)
        collector = Collector(feed, store, clock, speed=feed_settings.speed)
        c = collector.stats
        started = clock.monotonic()
        await _serve(
            "collector",
            collector.run,
            lambda e: (
                f"[collector] {e:6.1f}s events={c.received:,} ({_rate(c.received, e)})"
                f" stored={c.stored:,} duplicates={c.duplicates:,} buffered={c.buffered:,}"
                f" gaps={c.gaps} rejected={c.rejected}{_feed_line(feed)}"
            ),
            clock,
            duration=duration,
        )
    finally:
        await store.close()
    return {
        "events": c.received,
        "stored": c.stored,
        "duplicates": c.duplicates,
        "gaps": c.gaps,
        "rejected_inputs": c.rejected,
        "seconds": round(clock.monotonic() - started, 3),
        **_feed_summary(feed),
    }


async def run_processor(
    strategy: StrategySettings, store_url: str, redis: RedisSettings | None = None
) -> dict[str, Any]:
    """Run the processor alone: follow the store's market events until stopped.

    With Redis settings, an outbox relay publishes every stored signal to the stream.
    """
    clock = SystemClock()
    store = open_store(store_url)
    client = redis.client() if redis is not None else None
    relay = None
    if redis is not None and client is not None:
        relay = OutboxRelay(store, redis.publisher(client), name=outbox_name(redis))
    service = ProcessorService(
        store, strategy.processor(), on_signals=relay.notify if relay is not None else None
    )
    s = service.stats

    async def work(stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            if relay is not None:
                tg.start_soon(relay.run, stop)  # drains the outbox once stop is set
            await service.follow(stop)

    try:
        await _serve(
            "processor",
            work,
            lambda e: (
                f"[processor] {e:6.1f}s events={s.events:,} position={s.last_position:,}"
                f" bars={s.bars:,} signals={s.signals}"
            ),
            clock,
        )
    finally:
        await store.close()
        if client is not None:
            await client.aclose()
    return {
        "events": s.events,
        "bars": s.bars,
        "signals": s.signals,
        "published": relay.published if relay is not None else None,
        "position": s.last_position,
    }


async def run_trader(
    trading: TradingSettings, store_url: str, redis: RedisSettings | None = None
) -> dict[str, Any]:
    """Run the trader alone: follow the store's signals (or the Redis group) until stopped."""
    clock = SystemClock()
    store = open_store(store_url)
    gateway = PaperGateway(StoreQuoteSource(store), fee_rate=trading.fee)
    client = redis.client() if redis is not None else None
    consumer: SignalConsumer = StoreSignalConsumer(store)
    if redis is not None and client is not None:
        consumer = redis.consumer_for(client)
    trader = TraderService(store, consumer, gateway, quantity=trading.quantity)
    t = trader.stats
    try:
        await _serve(
            "trader",
            trader.run,
            lambda e: (
                f"[trader] {e:6.1f}s signals={t.received} orders={t.orders}"
                f" filled={t.filled} rejected={t.rejected} redelivered={t.redelivered}"
            ),
            clock,
        )
    finally:
        await store.close()
        if client is not None:
            await client.aclose()
    return {
        "signals": t.received,
        "orders": t.orders,
        "filled": t.filled,
        "rejected": t.rejected,
        "redelivered": t.redelivered,
        "failed": t.failed,
    }


class _DiscardingStore:
    """An event store that keeps nothing: ``record`` only needs the collector's book logic
    (gap detection and resync requests), not its storage."""

    def __init__(self) -> None:
        self._position = 0

    async def append(
        self, events: Sequence[Event], *, tracking: Tracking | None = None
    ) -> AppendResult:
        """Number the events and forget them."""
        first = self._position + 1
        self._position += len(events)
        return AppendResult(tuple(StoredEvent(first + i, e) for i, e in enumerate(events)), 0)

    async def last_event(self, stream: str) -> Event | None:
        """Nothing is kept."""
        return None


async def run_record(
    feed_settings: FeedSettings, out: Path, duration: float | None
) -> dict[str, Any]:
    """Record the live feed's raw frames and REST answers into ``out`` (the replay format).

    The collector's book logic runs on the frames (nothing is stored), so that a gap asks for
    a new snapshot, which is recorded too: the file replays into synchronised books.
    """
    clock = SystemClock()
    lines = 0
    with out.open("a", encoding="utf-8") as sink:

        def write(line: str) -> None:
            nonlocal lines
            sink.write(line + "\n")
            lines += 1

        feed = BinanceFeed(
            feed_settings.symbols,
            clock,
            ws_url=feed_settings.binance_ws_url,
            rest_url=feed_settings.binance_rest_url,
            recorder=write,
        )
        collector = Collector(feed, _DiscardingStore(), clock)  # type: ignore[arg-type]
        started = clock.monotonic()
        await _serve(
            "record",
            collector.run,
            lambda e: (
                f"[record] {e:6.1f}s lines={lines:,} events={collector.stats.received:,}"
                f" gaps={collector.stats.gaps}{_feed_line(feed)}"
            ),
            clock,
            duration=duration,
        )
    return {
        "file": str(out),
        "lines": lines,
        "events": collector.stats.received,
        "gaps": collector.stats.gaps,
        "seconds": round(clock.monotonic() - started, 3),
        **_feed_summary(feed),
    }
