"""The three services as processes: each one's composition root, checks and metrics.

``run_collector``, ``run_processor`` and ``run_trader`` each build their service from its
settings object, serve ``/healthcheck``, ``/livez``, ``/readyz`` and ``/metrics`` while it
runs (see :mod:`algotrade.apps.http`), start Pyroscope when ``PYROSCOPE_SERVER_ADDRESS`` is
set, and stop on SIGTERM or SIGINT: input stops, in-flight work is finished, stored and
acknowledged, buffers are flushed, and the command returns its summary (exit status 0).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from redis.asyncio import Redis

from algotrade.adapters import speedups
from algotrade.adapters.binance.feed import BinanceFeed
from algotrade.adapters.binance.klines import BinanceKlines
from algotrade.adapters.binance.trading import BinanceGateway
from algotrade.adapters.binance.userstream import BinanceUserStream
from algotrade.adapters.memory import SystemClock
from algotrade.adapters.mongo import MongoEventStore
from algotrade.adapters.redis import RedisSignalConsumer, RedisSignalPublisher
from algotrade.adapters.replay import RecordingSink
from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.adapters.store_bus import PaperGateway, StoreQuoteSource, StoreSignalConsumer
from algotrade.apps.common import Progress, open_store, rate, stop_after, stop_on_signals
from algotrade.apps.health import Check, Monitor, UnhealthyError
from algotrade.apps.http import create_app, listen, serve_http
from algotrade.apps.logs import log, warn
from algotrade.apps.metrics import Figure, Figures, ServiceMetrics
from algotrade.apps.runner import book_tops, log_notices, make_feed, outbox_name
from algotrade.apps.settings import (
    CollectorSettings,
    FeedSettings,
    ProcessorSettings,
    ServiceSettings,
    TraderSettings,
)
from algotrade.apps.timing import TimedStore
from algotrade.domain.errors import ConfigurationError, RecorderError
from algotrade.domain.events import Event
from algotrade.domain.ports import (
    AppendResult,
    Clock,
    EventStore,
    MarketFeed,
    OrderGateway,
    SignalConsumer,
    StoredEvent,
    Tracking,
)
from algotrade.services.collector import Collector
from algotrade.services.orders import OrderFollower
from algotrade.services.processor import OutboxRelay, ProcessorService
from algotrade.services.trader import TraderService, set_kill_switch

Work = Callable[[anyio.Event], Awaitable[None]]


@dataclass
class Observability:
    """A service's HTTP side: its checks (probed by the monitor) and its metrics."""

    monitor: Monitor
    metrics: ServiceMetrics


def observability(
    service: str,
    settings: ServiceSettings,
    checks: Sequence[Check],
    figures: Sequence[Figures],
    latencies: Iterable[str],
    operations: Iterable[str] = ("store_operation_seconds",),
) -> Observability:
    """Build a service's monitor and metrics; each check's state is a metric too."""
    monitor = Monitor(service, checks, interval=settings.http.probe_interval)

    def check_figures() -> list[Figure]:
        return [
            Figure(
                "check_up",
                "gauge",
                "1 when the health check passes, 0 when it fails (kind: dependency or flow).",
                labels=("check", "kind"),
                values=[((name, r.kind), float(r.ok)) for name, r in monitor.results.items()],
            )
        ]

    metrics = ServiceMetrics(service, [*figures, check_figures], latencies, operations)
    return Observability(monitor, metrics)


def timed(store: EventStore) -> TimedStore:
    """Return ``store`` timing its operations (recorded once :func:`record` is called)."""
    return TimedStore(store, lambda op, seconds: None)


def record(
    observed: Observability,
    store: TimedStore,
    *redis: RedisSignalPublisher | RedisSignalConsumer | None,
) -> None:
    """Send the store's and the Redis adapters' operation times to the service's metrics."""
    store.observe = observed.metrics.operation_observer("store_operation_seconds")
    for adapter in redis:
        if adapter is not None:
            adapter.observe_operation = observed.metrics.operation_observer(
                "redis_operation_seconds"
            )


def _untimed(store: EventStore) -> EventStore:
    """Return the store a :class:`TimedStore` wraps (its kind names checks and figures)."""
    return store.inner if isinstance(store, TimedStore) else store


def start_profiling(service: str) -> bool:
    """Send continuous profiles to Pyroscope when ``PYROSCOPE_SERVER_ADDRESS`` is set.

    Returns whether profiling started. The profiles are tagged with the service's name.
    """
    address = os.environ.get("PYROSCOPE_SERVER_ADDRESS", "").strip()
    if not address:
        return False
    if not address.startswith(("http://", "https://")):
        raise ConfigurationError(
            "PYROSCOPE_SERVER_ADDRESS", f"{address!r} is not an http:// or https:// URL"
        )
    try:
        import pyroscope  # type: ignore[import-untyped]  # no stubs; an optional extra
    except ImportError:
        raise ConfigurationError(
            "PYROSCOPE_SERVER_ADDRESS",
            "is set, but pyroscope-io is not installed: pip install 'algotrade[profiling]'",
        ) from None
    pyroscope.configure(
        application_name=os.environ.get("PYROSCOPE_APPLICATION_NAME", f"algotrade.{service}"),
        server_address=address,
        basic_auth_username=os.environ.get("PYROSCOPE_BASIC_AUTH_USER", ""),
        basic_auth_password=os.environ.get("PYROSCOPE_BASIC_AUTH_PASSWORD", ""),
        tags={"service": service},
    )
    log(service, "profiling to pyroscope", server=address)
    return True


async def serve(
    service: str,
    work: Work,
    render: Callable[[float], str],
    clock: Clock,
    *,
    settings: ServiceSettings | None = None,
    observed: Observability | None = None,
) -> None:
    """Run one service's work: signals, progress, health and metrics, an optional limit.

    On SIGTERM or SIGINT, ``/readyz`` turns 503 (``shutdown``) while the work drains; the
    HTTP side stops last.
    """
    stop = anyio.Event()
    http_stop = anyio.Event()
    progress = Progress(render, clock)
    sock = None
    if observed is not None and settings is not None:
        sock = listen(settings.http.host, settings.http.port)
        start_profiling(service)

    def on_signal(name: str) -> None:
        log(service, "stopping: finishing in-flight work", signal=name)
        if observed is not None:
            observed.monitor.stopping = True

    try:
        # The HTTP side runs outside the work's task group: it answers while the work
        # drains and is shut down gracefully (hypercorn does not take cancellation well).
        async with anyio.create_task_group() as outer:
            if observed is not None and sock is not None:
                app = create_app(observed.monitor, observed.metrics)
                await outer.start(serve_http, app, sock, http_stop)
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(stop_on_signals, stop, on_signal)
                    tg.start_soon(progress.run)
                    if observed is not None:
                        tg.start_soon(observed.monitor.run)
                    duration = settings.duration if settings is not None else None
                    if duration is not None:
                        tg.start_soon(stop_after, duration, stop)
                    if settings is not None:
                        tg.start_soon(_deadline, service, stop, settings.shutdown_grace)
                    await work(stop)
                    tg.cancel_scope.cancel()
            finally:
                http_stop.set()
    finally:
        if sock is not None:
            sock.close()
    progress.show()
    progress.finish()
    log(service, "stopped")


async def _deadline(service: str, stop: anyio.Event, grace: float) -> None:
    """Bound a shutdown: ``grace`` seconds after ``stop``, exit with status 1.

    Draining waits on the store and Redis (a batch handed over is stored, whatever it
    takes); when they stay away, the process must still end. What is abandoned is not
    lost: unacknowledged signals are redelivered, unpublished ones stay in the outbox, and
    a collector's restart records the missed market data as a gap.
    """
    await stop.wait()
    await anyio.sleep(grace)
    warn(service, "shutdown exceeded its grace: exiting, in-flight work abandoned",
         grace=f"{grace:g}s")  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


# --- shared checks ---------------------------------------------------------------------


def store_check(store: EventStore, url: str) -> Check:
    """Return the dependency check of the event store (named after its kind)."""
    name = "mongodb" if isinstance(_untimed(store), MongoEventStore) else "sqlite"
    if url == "memory":
        name = "memory"

    async def probe() -> str:
        started = anyio.current_time()
        await store.ping()
        return f"ping {(anyio.current_time() - started) * 1000:.1f}ms"

    return Check(name, "dependency", probe)


def redis_check(client: Redis) -> Check:
    """Return the dependency check of Redis."""

    async def probe() -> str:
        started = anyio.current_time()
        try:
            await client.ping()
        except Exception as e:
            raise UnhealthyError(f"Redis does not answer: {e}") from e
        return f"ping {(anyio.current_time() - started) * 1000:.1f}ms"

    return Check("redis", "dependency", probe)


def dependency_checks(store: EventStore, url: str, client: Redis | None) -> list[Check]:
    """Return the store's check and, when signals travel over Redis, Redis's."""
    checks = [store_check(store, url)]
    if client is not None:
        checks.append(redis_check(client))
    return checks


@contextlib.asynccontextmanager
async def closing(store: EventStore, client: Redis | None) -> AsyncIterator[None]:
    """Close the store and the Redis client (if any) on the way out, whatever happens."""
    try:
        yield
    finally:
        await store.close()
        if client is not None:
            await client.aclose()


# --- collector -----------------------------------------------------------------------------


def _feed_line(feed: MarketFeed) -> str:
    """Return the live feed's part of the collector's progress line."""
    if not isinstance(feed, BinanceFeed):
        return ""
    f = feed.stats
    return (
        f" connections={f.connections} reconnects={f.reconnects} silences={f.silences}"
        f" snapshots={f.snapshots} skew={_skew(f.clock_skew_ms)}"
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
        "clock_skew_ms": None if f.clock_skew_ms is None else round(f.clock_skew_ms, 1),
    }


def collector_checks(collector: Collector, settings: ServiceSettings) -> list[Check]:
    """Return the collector's flow checks: fresh market data, every book synchronised.

    A failing check of a live feed also says its last error (a refused connection, an
    unknown symbol's REST answer) and how long ago it happened.
    """
    clock = collector.clock

    def why() -> str:
        feed = collector.feed
        if not isinstance(feed, BinanceFeed) or not feed.last_error:
            return ""
        ago = clock.monotonic() - feed.last_error_at
        return f"; last feed error {ago:.0f}s ago: {feed.last_error}"

    async def market_data() -> str:
        last = collector.last_event_at
        age = clock.monotonic() - (collector.started_at if last is None else last)
        if age > settings.bounds.stale_after:
            what = "no market data yet" if last is None else "market data stale"
            bound = settings.bounds.stale_after
            raise UnhealthyError(f"{what}: nothing for {age:.1f}s (bound {bound:g}s){why()}")
        return f"last event {age:.1f}s ago"

    async def books() -> str:
        out = [s for s in collector.feed.symbols if not _synced(collector, s)]
        if out:
            raise UnhealthyError(f"book not synchronised: {', '.join(out)}{why()}")
        return f"{len(collector.feed.symbols)} synchronised"

    return [Check("market_data", "flow", market_data), Check("books", "flow", books)]


def _skew(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.0f}ms"


def _synced(collector: Collector, symbol: str) -> bool:
    sync = collector.books.get(symbol)
    return sync is not None and sync.synced


def collector_figures(collector: Collector, store: EventStore) -> Figures:
    """Return the collector's counters and gauges, read at scrape time."""

    def figures() -> list[Figure]:
        c = collector.stats
        last = collector.last_event_at
        out = [
            Figure("market_events", "counter", "Market events received.", c.received),
            Figure("stored_events", "counter", "Market events newly stored.", c.stored),
            Figure("duplicate_events", "counter", "Events already stored (skipped).", c.duplicates),
            Figure("sequence_gaps", "counter", "Sequence gaps recorded, by stream kind.",
                   labels=("stream",), values=[(("depth",), c.gaps), (("trades",), c.trade_gaps)]),
            Figure("resyncs", "counter", "Book snapshots applied (start, resyncs).", c.snapshots),
            Figure("rejected_inputs", "counter", "Malformed inputs rejected and kept aside.",
                   c.rejected),
            Figure("backfilled_trades", "counter", "Missing trades fetched over REST.",
                   c.backfilled),
            Figure("buffered_events", "gauge", "Events waiting to be stored.", c.buffered),
            Figure("takeovers", "counter", "Batches stored after another collector wrote the "
                   "same symbols first.", c.takeovers),
            Figure("book_synced", "gauge", "1 when the symbol's book is synchronised.",
                   labels=("symbol",),
                   values=[((s,), float(_synced(collector, s))) for s in collector.feed.symbols]),
            Figure("last_event_age_seconds", "gauge", "Seconds since market data last arrived.",
                   collector.clock.monotonic() - (last or collector.started_at)),
        ]  # fmt: skip
        feed = collector.feed
        if isinstance(feed, BinanceFeed):
            f = feed.stats
            out += [
                Figure("frames", "counter", "WebSocket frames received.", f.frames),
                Figure("connections", "counter", "WebSocket connections opened.", f.connections),
                Figure("reconnects", "counter", "Reconnections after a close, error or silence.",
                       f.reconnects),
                Figure("silences", "counter", "Connections declared dead by the watchdog.",
                       f.silences),
                Figure("rest_retries", "counter", "REST requests retried.", f.rest_retries),
            ]  # fmt: skip
            if f.clock_skew_ms is not None:  # absent, not 0, before the first diff
                out.append(Figure("clock_skew_seconds", "gauge",
                                  "Receive time minus exchange time of the latest depth diff.",
                                  f.clock_skew_ms / 1000))  # fmt: skip
        out += _store_figures(store)
        return out

    return figures


def _store_figures(timed_store: EventStore) -> list[Figure]:
    store = _untimed(timed_store)
    if isinstance(store, SqliteEventStore):
        what = "Market events deleted by the retention (SQLite)."
        return [Figure("expired_market_events", "counter", what, store.expired_events)]
    if not isinstance(store, MongoEventStore):
        return []
    return [Figure("store_retries", "counter", "MongoDB operations retried.", store.stats.retries)]


async def run_collector(settings: CollectorSettings) -> dict[str, Any]:
    """Run the collector: feed into the store, until stopped (or a replay ends)."""
    clock = SystemClock()
    service = settings.service
    store = timed(open_store(service.store, depth_retention=settings.depth_retention))
    try:
        feed = await make_feed(settings.feed, store)
        collector = Collector(
            feed, store, clock, speed=settings.feed.speed, flush_interval=settings.flush_interval,
            synchronizer=speedups.synchronizer,
            backfill=feed if isinstance(feed, BinanceFeed) else None,
        )  # fmt: skip
        observed = observability(
            "collector",
            service,
            [store_check(store, service.store), *collector_checks(collector, service)],
            [collector_figures(collector, store)],
            ["frame_to_stored_seconds"],
        )
        collector.observe = observed.metrics.observe
        record(observed, store)
        c = collector.stats
        started = clock.monotonic()
        # Without a C compiler at install: the same results, three to four times slower.
        log("collector", "depth frames and books", compiled=speedups.COMPILED)
        await serve(
            "collector",
            collector.run,
            lambda e: (
                f"[collector] {e:6.1f}s {book_tops(collector)} events={c.received:,}"
                f" ({rate(c.received, e)})"
                f" stored={c.stored:,} duplicates={c.duplicates:,} buffered={c.buffered:,}"
                f" gaps={c.gaps} rejected={c.rejected}{_feed_line(feed)}"
            ),
            clock,
            settings=service,
            observed=observed,
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


# --- processor -----------------------------------------------------------------------------


@dataclass
class _Lag:
    events: int = 0


def processor_checks(
    service: ProcessorService, relay: OutboxRelay | None, settings: ServiceSettings, lag: _Lag
) -> list[Check]:
    """Return the processor's flow checks: not behind the store, outbox drained."""
    bounds = settings.bounds

    async def behind() -> str:
        lag.events = await service.lag()
        if lag.events > bounds.max_lag:
            raise UnhealthyError(f"{lag.events:,} stored events behind (bound {bounds.max_lag:,})")
        return f"{lag.events:,} events behind"

    async def outbox() -> str:
        assert relay is not None
        since = relay.pending_since
        age = 0.0 if since is None or not relay.backlog else time.monotonic() - since
        if age > bounds.outbox_max_age:
            raise UnhealthyError(
                f"{relay.backlog} signal(s) unpublished for {age:.1f}s "
                f"(bound {bounds.outbox_max_age:g}s)"
            )
        return f"{relay.backlog} unpublished"

    checks = [Check("processing", "flow", behind)]
    if relay is not None:
        checks.append(Check("outbox", "flow", outbox))
    return checks


def processor_figures(service: ProcessorService, relay: OutboxRelay | None, lag: _Lag) -> Figures:
    """Return the processor's counters and gauges."""

    def figures() -> list[Figure]:
        s = service.stats
        out = [
            Figure("processed_events", "counter", "Stored market events processed.", s.events),
            Figure("bars", "counter", "Bars closed and stored.", s.bars),
            Figure("signals", "counter", "Signals emitted and stored.", s.signals),
            Figure("duplicate_events", "counter", "Bars or signals already stored (skipped).",
                   s.duplicates),
            Figure("takeovers", "counter", "Restarts from the store after another processor "
                   "stored the same series first.", s.takeovers),
            Figure("processor_position", "gauge", "Store position processed so far.",
                   s.last_position),
            Figure("processor_lag_events", "gauge", "Stored events not yet processed.",
                   lag.events),
        ]  # fmt: skip
        if relay is not None:
            out += [
                Figure("published_signals", "counter", "Signals published on the stream.",
                       relay.published),
                Figure("outbox_backlog", "gauge", "Signals stored, not yet published.",
                       relay.backlog),
            ]  # fmt: skip
        return out

    return figures


async def run_processor(settings: ProcessorSettings) -> dict[str, Any]:
    """Run the processor: follow the store's market events until stopped.

    With Redis settings, an outbox relay publishes every stored signal to the stream.
    """
    clock = SystemClock()
    service_settings = settings.service
    store = timed(open_store(service_settings.store))
    redis = settings.redis
    client = redis.client() if redis is not None else None
    relay = None
    publisher = None
    if redis is not None and client is not None:
        publisher = redis.publisher(client)
        relay = OutboxRelay(store, publisher, name=outbox_name(redis), clock=clock)
    service = ProcessorService(
        store,
        settings.strategy.processor(),
        on_signals=relay.notify if relay is not None else None,
        clock=clock,
        history=BinanceKlines(settings.warmup_url) if settings.warmup_url else None,
    )
    lag = _Lag()
    dependencies = dependency_checks(store, service_settings.store, client)
    observed = observability(
        "processor",
        service_settings,
        [*dependencies, *processor_checks(service, relay, service_settings, lag)],
        [processor_figures(service, relay, lag)],
        ["event_to_signal_seconds", "signal_to_published_seconds"],
        ["store_operation_seconds", "redis_operation_seconds"],
    )
    service.observe = observed.metrics.observe
    record(observed, store, publisher)
    if relay is not None:
        relay.observe = observed.metrics.observe
    s = service.stats

    async def work(stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            if relay is not None:
                tg.start_soon(relay.run, stop)  # drains the outbox once stop is set
            await service.follow(stop)

    async with closing(store, client):
        await serve(
            "processor",
            work,
            lambda e: (
                f"[processor] {e:6.1f}s events={s.events:,} position={s.last_position:,}"
                f" bars={s.bars:,} signals={s.signals}"
            ),
            clock,
            settings=service_settings,
            observed=observed,
        )
    return {
        "events": s.events,
        "bars": s.bars,
        "signals": s.signals,
        "published": relay.published if relay is not None else None,
        "position": s.last_position,
    }


# --- trader --------------------------------------------------------------------------------


@dataclass
class _Backlog:
    lag: int = 0
    pending: int = 0


def trader_checks(
    consumer: SignalConsumer, settings: ServiceSettings, backlog: _Backlog
) -> list[Check]:
    """Return the trader's flow check: consumer lag and pending entries under their bounds."""
    bounds = settings.bounds

    async def consuming() -> str:
        if not isinstance(consumer, RedisSignalConsumer):
            return "following the store"
        backlog.lag, backlog.pending = await consumer.backlog(bound=bounds.max_lag + 1)
        problems = []
        if backlog.lag > bounds.max_lag:
            problems.append(f"lag {backlog.lag:,} entries (bound {bounds.max_lag:,})")
        if backlog.pending > bounds.max_pending:
            problems.append(f"{backlog.pending:,} pending (bound {bounds.max_pending:,})")
        if problems:
            raise UnhealthyError("; ".join(problems))
        return f"lag {backlog.lag}, pending {backlog.pending}"

    return [Check("consumer", "flow", consuming)]


def exchange_checks(exchange: BinanceGateway, stream: BinanceUserStream) -> list[Check]:
    """Return the Binance dependency check: the REST API answers and the user data stream
    is connected (without it, order updates would wait for the next reconciliation)."""

    async def binance() -> str:
        await exchange.ping()
        if not stream.stats.connected:
            raise UnhealthyError(f"user data stream not connected: {stream.stats.last_error}")
        return f"REST answers, user data stream connected ({stream.stats.events} reports)"

    return [Check("binance", "dependency", binance)]


def trader_figures(
    trader: TraderService,
    consumer: SignalConsumer,
    backlog: _Backlog,
    exchange: BinanceGateway | None = None,
    follower: OrderFollower | None = None,
    stream: BinanceUserStream | None = None,
) -> Figures:
    """Return the trader's counters and gauges (and the exchange's, when trading on one)."""

    def figures() -> list[Figure]:
        t = trader.stats
        out = [
            Figure("signals_received", "counter", "Signal deliveries received.", t.received),
            Figure("orders", "counter", "Orders stored, by outcome.", labels=("status",),
                   values=[(("filled",), t.filled), (("rejected",), t.rejected),
                           (("working",), t.working)]),
            Figure("halted_orders", "counter", "Orders refused by the kill switch.", t.halted),
            Figure("redeliveries", "counter", "Deliveries of a signal after its first.",
                   t.redeliveries),
            Figure("duplicate_signals", "counter", "Signals whose order already existed.",
                   t.redelivered),
            Figure("failed_signals", "counter", "Deliveries left pending after a failure.",
                   t.failed),
            Figure("acknowledged", "counter", "Deliveries acknowledged.", t.acknowledged),
            Figure("position_quantity", "gauge", "Open position, in base units.",
                   labels=("symbol",),
                   values=[((s,), float(p.quantity)) for s, p in trader.positions.items()]),
        ]  # fmt: skip
        if isinstance(consumer, RedisSignalConsumer):
            out += [
                Figure("dead_letters", "counter", "Entries moved to the dead-letter stream.",
                       consumer.dead_lettered),
                Figure("reclaimed", "counter", "Entries taken over from another consumer.",
                       consumer.reclaimed),
                Figure("consumer_lag", "gauge", "Stream entries not yet delivered to the group.",
                       backlog.lag),
                Figure("consumer_pending", "gauge", "Entries delivered, not acknowledged.",
                       backlog.pending),
            ]  # fmt: skip
        if exchange is not None:
            g = exchange.stats
            out += [
                Figure("exchange_requests", "counter", "REST requests to the exchange.",
                       g.requests),
                Figure("exchange_duplicates_prevented", "counter",
                       "Orders a lookup found already placed.", g.found),
                Figure("exchange_uncertain", "counter", "Timeouts and 5xx answers.",
                       g.uncertain),
                Figure("exchange_clock_resyncs", "counter", "Exchange clock measurements.",
                       g.resyncs),
                Figure("exchange_rate_limited", "counter", "Rate-limit waits.", g.rate_limited),
                Figure("exchange_rejections", "counter", "Orders rejected, by whom.",
                       labels=("by",), values=[(("rules",), g.rejected_by_rules),
                                               (("exchange",), g.rejected_by_exchange)]),
                Figure("working_orders", "gauge", "Orders the exchange may still change.",
                       len(trader.working)),
            ]  # fmt: skip
        if follower is not None:
            out += [
                Figure("order_updates", "counter", "Exchange reports stored.",
                       follower.stats.updates),
                Figure("cancelled_orders", "counter",
                       "Working orders cancelled after --cancel-after.",
                       follower.stats.cancelled),
            ]  # fmt: skip
        if stream is not None:
            out += [
                Figure("user_stream_connections", "counter", "User data stream connections.",
                       stream.stats.connections),
                Figure("user_stream_rejected", "counter", "Malformed reports set aside.",
                       stream.stats.rejected),
            ]  # fmt: skip
        return out

    return figures


async def run_trader(settings: TraderSettings) -> dict[str, Any]:
    """Run the trader: the Redis group's signals (or the store's) into orders, until stopped.

    With ``--gateway binance`` the orders go to Binance and an :class:`OrderFollower` keeps
    the stored orders and position in step with the account's user data stream.
    """
    clock = SystemClock()
    service_settings = settings.service
    trading = settings.trading
    store = timed(open_store(service_settings.store))
    binance = trading.binance
    gateway: OrderGateway
    exchange: BinanceGateway | None = None
    if binance is not None:
        exchange = BinanceGateway(
            binance.rest_url, binance.api_key, binance.signer(), clock=clock,
            recv_window_ms=binance.recv_window_ms,
        )  # fmt: skip
        gateway = exchange
    else:
        gateway = PaperGateway(StoreQuoteSource(store), fee_rate=trading.fee)
    redis = settings.redis
    client = redis.client() if redis is not None else None
    consumer: SignalConsumer = StoreSignalConsumer(store)
    redis_consumer = None
    if redis is not None and client is not None:
        consumer = redis_consumer = redis.consumer_for(client)
    trader = TraderService(
        store, consumer, gateway, quantity=trading.quantity, sizing=trading.sizing,
        max_position=trading.max_position, limit_offset_bps=trading.limit_offset_bps,
        clock=clock,
    )  # fmt: skip
    follower: OrderFollower | None = None
    stream: BinanceUserStream | None = None
    if exchange is not None and binance is not None:
        follower = OrderFollower(
            trader,
            exchange,
            reconcile_every=binance.reconcile_every,
            cancel_after=binance.cancel_after,
        )
        stream = BinanceUserStream(
            binance.stream_url,
            binance.api_key,
            binance.signer(),
            timestamp_ms=exchange.server_time_ms,
            resync=exchange.sync_time,
            recv_window_ms=binance.recv_window_ms,
            notify=log_notices("trader"),
        )
        log("trader", "trading on Binance", url=binance.rest_url, production=binance.production)
    backlog = _Backlog()
    dependencies = dependency_checks(store, service_settings.store, client)
    observed = observability(
        "trader",
        service_settings,
        [
            *dependencies,
            *trader_checks(consumer, service_settings, backlog),
            *(exchange_checks(exchange, stream) if exchange and stream else []),
        ],
        [trader_figures(trader, consumer, backlog, exchange, follower, stream)],
        ["published_to_acked_seconds", "exchange_to_acked_seconds", "order_placement_seconds"],
        ["store_operation_seconds", "redis_operation_seconds"],
    )
    trader.observe = observed.metrics.observe
    trader.observe_data = observed.metrics.observe_data_latency
    record(observed, store, redis_consumer)
    t = trader.stats

    async def work(stop: anyio.Event) -> None:
        if follower is None or stream is None:
            await trader.run(stop)
            return
        await follower.load_working()  # before any signal: no second order beside one working
        async with anyio.create_task_group() as tg:
            tg.start_soon(follower.run, stream, stop)
            await trader.run(stop)

    async with closing(store, client):
        try:
            await serve(
                "trader",
                work,
                lambda e: (
                    f"[trader] {e:6.1f}s signals={t.received} orders={t.orders}"
                    f" filled={t.filled} working={t.working} rejected={t.rejected}"
                    f" redelivered={t.redelivered}"
                ),
                clock,
                settings=service_settings,
                observed=observed,
            )
        finally:
            if exchange is not None:
                await exchange.close()
            if stream is not None:
                await stream.close()
    summary: dict[str, Any] = {
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
        summary["order_updates"] = follower.stats.updates
    return summary


async def run_kill_switch(store_url: str, *, halt: bool, reason: str) -> dict[str, Any]:
    """Set or clear the kill switch in the store every trader reads."""
    store = open_store(store_url, patient=False, existing="store")
    try:
        event = await set_kill_switch(store, halt=halt, reason=reason, clock=SystemClock())
    finally:
        await store.close()
    return {"halted": halt, "reason": reason, "version": event.version}


# --- record --------------------------------------------------------------------------------


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


def _write_failed(out: Path, error: OSError) -> RecorderError:
    return RecorderError(f"cannot write the recording {str(out)!r}: {error.strerror or error}")


async def _flush_every(sink: RecordingSink, out: Path) -> None:
    while True:
        await anyio.sleep(sink.flush_every)
        try:
            sink.flush_if_due()
        except OSError as e:
            raise _write_failed(out, e) from e


async def run_record(
    feed_settings: FeedSettings, out: Path, duration: float | None
) -> dict[str, Any]:
    """Record the live feed's raw frames and REST answers into ``out`` (the replay format).

    The collector's book logic runs on the frames (nothing is stored), so that a gap asks for
    a new snapshot, which is recorded too: the file replays into synchronised books.
    """
    clock = SystemClock()
    lines = 0
    try:
        sink = RecordingSink(out)
    except OSError as e:
        raise RecorderError(f"cannot open the recording {str(out)!r}: {e.strerror}") from e

    def write(line: str) -> None:
        """Write each line, flushed as it comes (plain) or every second (gzip): a killed
        recorder keeps what it received (all of it, or all but the last second), and a
        full disk stops the recording at once (or within the second), not at the close."""
        nonlocal lines
        try:
            sink.write(line)
        except OSError as e:
            raise _write_failed(out, e) from e
        lines += 1

    feed = BinanceFeed(
        feed_settings.symbols,
        clock,
        ws_url=feed_settings.binance_ws_url,
        rest_url=feed_settings.binance_rest_url,
        recorder=write,
        notify=log_notices("record"),
    )
    collector = Collector(feed, _DiscardingStore(), clock, synchronizer=speedups.synchronizer)  # type: ignore[arg-type]

    async def work(stop: anyio.Event) -> None:
        """Record until ``stop``; a compressed file is flushed every second, lull or not."""
        async with anyio.create_task_group() as tg:
            if sink.compressed:
                tg.start_soon(_flush_every, sink, out)
            await collector.run(stop)
            tg.cancel_scope.cancel()

    started = clock.monotonic()
    try:
        await serve(
            "record",
            work,
            lambda e: (
                f"[record] {e:6.1f}s {book_tops(collector)} lines={lines:,}"
                f" events={collector.stats.received:,}"
                f" gaps={collector.stats.gaps}{_feed_line(feed)}"
            ),
            clock,
            settings=ServiceSettings(duration=duration),
        )
    except BaseException:
        # Closing can only fail again on what the failure already reported (a full disk);
        # the file descriptor is closed either way.
        with contextlib.suppress(OSError):
            sink.close()
        raise
    try:
        sink.close()  # a compressed recording writes its last second and trailer here
    except OSError as e:
        raise _write_failed(out, e) from e
    return {
        "file": str(out),
        "lines": lines,
        "events": collector.stats.received,
        "gaps": collector.stats.gaps,
        "seconds": round(clock.monotonic() - started, 3),
        **_feed_summary(feed),
    }
