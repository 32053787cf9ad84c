"""The composition root: one ``bootstrap_<app>`` per app, the only place adapters meet the
use cases.

Each builds the real adapters only for the arguments left ``None`` (a test hands in
in-memory fakes, a fake exchange's gateway, a fixed clock) and returns the app's work with
what the entry points show of it: checks, figures, progress line, summary
(:class:`App`). The services' HTTP processes (:mod:`algotrade.apps.services`), the CLI,
``algotrade run`` and the tests all start an app through here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from redis.asyncio import Redis

from algotrade.adapters import speedups
from algotrade.adapters.binance.klines import BinanceKlines
from algotrade.adapters.memory import InMemorySignalBus, SystemClock
from algotrade.adapters.redis import RedisSignalConsumer, RedisSignalPublisher
from algotrade.adapters.store_bus import PaperGateway, StoreQuoteSource, StoreSignalConsumer
from algotrade.apps.common import book_tops, rate
from algotrade.apps.health import Check
from algotrade.apps.logs import log
from algotrade.apps.metrics import Figures, ServiceMetrics
from algotrade.apps.settings import (
    CollectorSettings,
    ProcessorSettings,
    RunSettings,
    TraderSettings,
)
from algotrade.apps.timing import TimedStore
from algotrade.apps.vitals import (
    Backlog,
    Lag,
    collector_checks,
    collector_figures,
    processor_checks,
    processor_figures,
    trader_checks,
    trader_figures,
)
from algotrade.apps.wiring import (
    FeedParts,
    Parts,
    bare,
    binance_exchange,
    make_feed,
    outbox_name,
    redis_check,
    redis_client,
    redis_consumer,
    redis_publisher,
    store_check,
    store_parts,
)
from algotrade.domain.ports import (
    BarHistory,
    Clock,
    EventStore,
    MarketFeed,
    OrderGateway,
    SignalConsumer,
    SignalPublisher,
    StoredEvent,
    TradeBackfill,
)
from algotrade.domain.values import TopOfBook
from algotrade.services.collector import Collector
from algotrade.services.orders import OrderFollower
from algotrade.services.processor import OutboxRelay, ProcessorService
from algotrade.services.trader import TraderService, signals_without_orders

Work = Callable[[anyio.Event], Awaitable[None]]
"""An app's work: runs until its input ends or the event is set, then drains."""


def _attach_nothing(metrics: ServiceMetrics) -> None:
    """An app with no observer to connect."""


async def _close_nothing() -> None:
    """An app with nothing to close."""


@dataclass
class App:
    """One app, built: its work and what the entry points show of it."""

    name: str
    clock: Clock
    work: Work
    progress: Callable[[float], str]
    """The progress line after ``elapsed`` seconds."""
    summary: Callable[[], dict[str, Any]]
    """The figures the command prints when it ends."""
    checks: list[Check] = field(default_factory=list)
    figures: list[Figures] = field(default_factory=list)
    latencies: tuple[str, ...] = ()
    """The latency histograms it observes."""
    operations: tuple[str, ...] = ("store_operation_seconds",)
    """The operation histograms it observes."""
    attach: Callable[[ServiceMetrics], None] = _attach_nothing
    """Connects its observers (latencies, operation times) to the service's metrics."""
    close: Callable[[], Awaitable[None]] = _close_nothing
    """Releases its adapters (the store, Redis, the exchange), whatever happened."""


def _timed(parts: Parts[EventStore]) -> TimedStore:
    """Return the store timing its operations (recorded once an app's metrics attach)."""
    return TimedStore(parts.adapter, lambda op, seconds: None)


def _store_checks(parts: Parts[EventStore]) -> list[Check]:
    """Return the store's dependency check: its kind's, or ``store`` for one handed in."""
    return parts.checks or [store_check(parts.adapter, "store")]


def _collector(feed: MarketFeed, store: EventStore, clock: Clock, **options: Any) -> Collector:
    """Return a collector on the compiled books when built, back-filling trades when the
    feed can."""
    return Collector(
        feed, store, clock, synchronizer=speedups.synchronizer,
        backfill=feed if isinstance(feed, TradeBackfill) else None, **options,
    )  # fmt: skip


# --- collector -------------------------------------------------------------------------------


async def bootstrap_collector(
    settings: CollectorSettings,
    *,
    store: EventStore | None = None,
    feed: MarketFeed | None = None,
    clock: Clock | None = None,
) -> App:
    """Build the collector: the feed the settings name into the store."""
    clock = clock or SystemClock()
    service = settings.service
    stored = (
        bare(store)
        if store is not None
        else store_parts(service.store, depth_retention=settings.depth_retention)
    )
    timed = _timed(stored)
    try:
        source = (
            FeedParts(feed) if feed is not None else await make_feed(settings.feed, timed, clock)
        )
    except BaseException:
        await timed.close()
        raise
    collector = _collector(
        source.adapter, timed, clock, speed=settings.feed.speed,
        flush_interval=settings.flush_interval,
    )  # fmt: skip
    c = collector.stats
    started = clock.monotonic()

    def attach(metrics: ServiceMetrics) -> None:
        collector.observe = metrics.observe
        timed.observe = metrics.operation_observer("store_operation_seconds")

    # Without a C compiler at install: the same results, three to four times slower.
    log("collector", "depth frames and books", compiled=speedups.COMPILED)
    return App(
        "collector",
        clock,
        collector.run,
        lambda e: (
            f"[collector] {e:6.1f}s {book_tops(collector)} events={c.received:,}"
            f" ({rate(c.received, e)})"
            f" stored={c.stored:,} duplicates={c.duplicates:,} buffered={c.buffered:,}"
            f" gaps={c.gaps} rejected={c.rejected}{source.line()}"
        ),
        lambda: {
            "events": c.received,
            "stored": c.stored,
            "duplicates": c.duplicates,
            "gaps": c.gaps,
            "rejected_inputs": c.rejected,
            "seconds": round(clock.monotonic() - started, 3),
            **source.summary(),
        },
        checks=[
            *_store_checks(stored),
            *collector_checks(collector, service, source.problem),
        ],
        figures=[collector_figures(collector), *source.figures, *stored.figures],
        latencies=("frame_to_stored_seconds",),
        attach=attach,
        close=timed.close,
    )


# --- processor -------------------------------------------------------------------------------


async def bootstrap_processor(
    settings: ProcessorSettings,
    *,
    store: EventStore | None = None,
    bus: SignalPublisher | None = None,
    history: BarHistory | None = None,
    clock: Clock | None = None,
) -> App:
    """Build the processor: it follows the store's market events and stores bars and
    signals; an outbox relay publishes the stored signals on ``bus`` (built from the Redis
    settings when ``None``; no relay without either)."""
    clock = clock or SystemClock()
    service_settings = settings.service
    stored = bare(store) if store is not None else store_parts(service_settings.store)
    timed = _timed(stored)
    redis = settings.redis
    client: Redis | None = None
    publisher = bus
    redis_publisher_: RedisSignalPublisher | None = None
    if publisher is None and redis is not None:
        client = redis_client(redis)
        publisher = redis_publisher_ = redis_publisher(redis, client)
    relay = None
    if publisher is not None:
        name = outbox_name(redis) if redis is not None else "outbox"
        relay = OutboxRelay(timed, publisher, name=name, clock=clock)
    if history is None and settings.warmup_url:
        history = BinanceKlines(settings.warmup_url)
    service = ProcessorService(
        timed,
        settings.strategy.processor(),
        on_signals=relay.notify if relay is not None else None,
        clock=clock,
        history=history,
    )
    lag = Lag()
    s = service.stats

    def attach(metrics: ServiceMetrics) -> None:
        service.observe = metrics.observe
        service.observe_data = metrics.observe_data_latency
        if relay is not None:
            relay.observe = metrics.observe
        timed.observe = metrics.operation_observer("store_operation_seconds")
        if redis_publisher_ is not None:
            redis_publisher_.observe_operation = metrics.operation_observer(
                "redis_operation_seconds"
            )

    async def work(stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            if relay is not None:
                tg.start_soon(relay.run, stop)  # drains the outbox once stop is set
            await service.follow(stop)

    async def close() -> None:
        try:
            await timed.close()
        finally:
            if client is not None:
                await client.aclose()

    checks = _store_checks(stored)
    if client is not None:
        checks.append(redis_check(client))
    return App(
        "processor",
        clock,
        work,
        lambda e: (
            f"[processor] {e:6.1f}s events={s.events:,} position={s.last_position:,}"
            f" bars={s.bars:,} signals={s.signals}"
        ),
        lambda: {
            "events": s.events,
            "bars": s.bars,
            "signals": s.signals,
            "published": relay.published if relay is not None else None,
            "position": s.last_position,
        },
        checks=[*checks, *processor_checks(service, relay, service_settings, lag)],
        figures=[processor_figures(service, relay, lag), *stored.figures],
        latencies=(
            "event_to_signal_seconds",
            "received_to_signal_seconds",
            "signal_to_published_seconds",
        ),
        operations=("store_operation_seconds", "redis_operation_seconds"),
        attach=attach,
        close=close,
    )


# --- trader ----------------------------------------------------------------------------------


async def bootstrap_trader(
    settings: TraderSettings,
    *,
    store: EventStore | None = None,
    bus: SignalConsumer | None = None,
    gateway: OrderGateway | None = None,
    clock: Clock | None = None,
) -> App:
    """Build the trader: signals from ``bus`` (the Redis group of the settings, or the
    store when they name no Redis), one order each through ``gateway`` (the paper broker,
    or Binance with an order follower when the settings say so)."""
    clock = clock or SystemClock()
    service_settings = settings.service
    trading = settings.trading
    stored = bare(store) if store is not None else store_parts(service_settings.store)
    timed = _timed(stored)
    redis = settings.redis
    client: Redis | None = None
    consumer: SignalConsumer
    group: RedisSignalConsumer | None = None
    if bus is not None:
        consumer = bus
    elif redis is not None:
        client = redis_client(redis)
        consumer = group = redis_consumer(redis, client)
    else:
        consumer = StoreSignalConsumer(timed)
    exchange = None
    if gateway is None and trading.binance is not None:
        exchange = binance_exchange(trading.binance, clock)
        gateway = exchange.gateway
        log("trader", "trading on Binance", url=trading.binance.rest_url,
            production=trading.binance.production)  # fmt: skip
    elif gateway is None:
        gateway = PaperGateway(StoreQuoteSource(timed), fee_rate=trading.fee)
    trader = TraderService(
        timed, consumer, gateway, quantity=trading.quantity, sizing=trading.sizing,
        max_position=trading.max_position, limit_offset_bps=trading.limit_offset_bps,
        clock=clock,
    )  # fmt: skip
    follower: OrderFollower | None = None
    if exchange is not None and trading.binance is not None:
        follower = OrderFollower(
            trader,
            exchange.gateway,
            reconcile_every=trading.binance.reconcile_every,
            cancel_after=trading.binance.cancel_after,
        )
    backlog = Backlog()
    t = trader.stats

    def attach(metrics: ServiceMetrics) -> None:
        trader.observe = metrics.observe
        trader.observe_data = metrics.observe_data_latency
        timed.observe = metrics.operation_observer("store_operation_seconds")
        if group is not None:
            group.observe_operation = metrics.operation_observer("redis_operation_seconds")

    async def work(stop: anyio.Event) -> None:
        if follower is None or exchange is None:
            await trader.run(stop)
            return
        await follower.load_working()  # before any signal: no second order beside one working
        async with anyio.create_task_group() as tg:
            tg.start_soon(follower.run, exchange.stream, stop)
            await trader.run(stop)

    async def close() -> None:
        try:
            await timed.close()
            if client is not None:
                await client.aclose()
        finally:
            if exchange is not None:
                await exchange.gateway.close()
                await exchange.stream.close()

    def summary() -> dict[str, Any]:
        out: dict[str, Any] = {
            "signals": t.received,
            "orders": t.orders,
            "filled": t.filled,
            "working": t.working,
            "rejected": t.rejected,
            "halted": t.halted,
            "redelivered": t.redelivered,
            "failed": t.failed,
        }
        if follower is not None:
            out["order_updates"] = follower.stats.updates
        return out

    checks = _store_checks(stored)
    if client is not None:
        checks.append(redis_check(client))
    checks += trader_checks(service_settings, backlog, group.backlog if group else None)
    return App(
        "trader",
        clock,
        work,
        lambda e: (
            f"[trader] {e:6.1f}s signals={t.received} orders={t.orders}"
            f" filled={t.filled} working={t.working} rejected={t.rejected}"
            f" redelivered={t.redelivered}"
        ),
        summary,
        checks=[*checks, *(exchange.checks if exchange is not None else [])],
        figures=[
            trader_figures(trader, backlog, group, follower),
            *(exchange.figures if exchange is not None else []),
            *stored.figures,
        ],
        latencies=(
            "published_to_acked_seconds",
            "exchange_to_acked_seconds",
            "received_to_acked_seconds",
            "order_placement_seconds",
        ),
        operations=("store_operation_seconds", "redis_operation_seconds"),
        attach=attach,
        close=close,
    )


# --- run: the three in one process -------------------------------------------------------------


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
    gateway: OrderGateway | None = None,
    clock: Clock | None = None,
) -> Pipeline:
    """Wire collector, processor and trader in one process on one store.

    Signals go to the trader over an in-process bus, or through Redis (an outbox relay
    publishes them, the trader reads them in a consumer group) when settings name Redis.
    The trader's gateway is the paper broker on the collector's own books by default.
    """
    clock = clock or SystemClock()
    store = store or store_parts(settings.store, depth_retention=settings.depth_retention).adapter
    feed = feed or (await make_feed(settings.feed, store, clock)).adapter
    bus: InMemorySignalBus | None = None
    relay: OutboxRelay | None = None
    client: Redis | None = None
    consumer: SignalConsumer
    if settings.redis is None:
        bus = consumer = InMemorySignalBus()
        # The bus lives and dies with the process: what an earlier run stored and did not
        # act upon (killed in between) goes first. Redis keeps its pending entries instead.
        unanswered = await signals_without_orders(store)
        if unanswered:
            log("run", "signals of an earlier run without an order: acting on them first",
                count=len(unanswered))  # fmt: skip
            await bus.publish(unanswered)
    else:
        client = redis_client(settings.redis)
        relay = OutboxRelay(
            store,
            redis_publisher(settings.redis, client),
            name=outbox_name(settings.redis),
            clock=clock,
        )
        consumer = redis_consumer(settings.redis, client)
    processor = ProcessorService(
        store,
        settings.strategy.processor(),
        publisher=bus,
        on_signals=relay.notify if relay is not None else None,
        clock=clock,
    )

    async def on_stored(batch: Sequence[StoredEvent]) -> None:
        await processor.handle(batch)

    collector = _collector(feed, store, clock, speed=settings.feed.speed, on_stored=on_stored)
    gateway = gateway or PaperGateway(CollectorQuotes(collector), fee_rate=settings.trading.fee)
    trader = TraderService(
        store, consumer, gateway, quantity=settings.trading.quantity, clock=clock
    )
    return Pipeline(store, feed, collector, processor, trader, bus, clock, relay, client)
