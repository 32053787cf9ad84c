"""The real adapters, built from settings, each with what the entry points show of it.

A builder returns the adapter together with its checks, figures, progress-line part and
summary fields (:class:`Parts`), because the builder is the one place that knows which
adapter it made: nothing downstream asks an adapter what it is (no ``isinstance`` on
adapters to choose metrics). An adapter handed in by a caller (a test's fake) comes with
no parts: :func:`bare`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
from redis.asyncio import Redis

from algotrade.adapters.binance.feed import BinanceFeed
from algotrade.adapters.binance.signing import Ed25519Signer, HmacSigner, Signer
from algotrade.adapters.binance.trading import BinanceGateway
from algotrade.adapters.binance.userstream import BinanceUserStream
from algotrade.adapters.memory import InMemoryEventStore
from algotrade.adapters.mongo import MongoEventStore
from algotrade.adapters.notices import Notice, Notify
from algotrade.adapters.redis import RedisSignalConsumer, RedisSignalPublisher
from algotrade.adapters.replay import ReplayFeed
from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.adapters.synthetic import SyntheticFeed, SyntheticStart
from algotrade.apps.health import Check, UnhealthyError
from algotrade.apps.logs import log, redact, warn
from algotrade.apps.metrics import Figure, Figures
from algotrade.apps.settings import BinanceTradingSettings, FeedSettings, RedisSettings
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BookSnapshotTaken, DepthDiffReceived, TradeReceived
from algotrade.domain.ports import Clock, EventStore, MarketFeed
from algotrade.domain.streams import depth_stream, trade_stream

A = TypeVar("A")

SYNTHETIC_STEP_NS = 100_000_000
SYNTHETIC_TICK = Decimal("0.01")


def _nothing() -> str:
    return ""


def _no_fields() -> dict[str, Any]:
    return {}


@dataclass
class Parts(Generic[A]):
    """An adapter and what the entry points show of it."""

    adapter: A
    checks: list[Check] = field(default_factory=list)
    figures: list[Figures] = field(default_factory=list)
    line: Callable[[], str] = _nothing
    """Its part of the progress line (leading space included), ``""`` for none."""
    summary: Callable[[], dict[str, Any]] = _no_fields
    """Its fields in the command's summary."""
    problem: Callable[[], str] = _nothing
    """Its last error with its age, for a failing check to say (``""``: none)."""


def bare(adapter: A) -> Parts[A]:
    """Return an adapter given by a caller: nothing to show of it."""
    return Parts(adapter)


def log_notices(app: str) -> Notify:
    """Return what logs a connection adapter's notices: news at info, failures as warnings."""

    def notice(told: Notice) -> None:
        (warn if told.problem else log)(app, told.message, **told.fields)

    return notice


# --- stores ----------------------------------------------------------------------------------


def store_kind(url: str) -> str:
    """Return the kind of store a URL names (the name of its health check)."""
    if url == "memory":
        return "memory"
    return "mongodb" if url.startswith(("mongodb://", "mongodb+srv://")) else "sqlite"


def store_check(store: EventStore, name: str) -> Check:
    """Return the dependency check of an event store, named after its kind."""

    async def probe() -> str:
        started = anyio.current_time()
        await store.ping()
        return f"ping {(anyio.current_time() - started) * 1000:.1f}ms"

    return Check(name, "dependency", probe)


def open_store(
    url: str,
    *,
    depth_retention: float | None = None,
    patient: bool = True,
    existing: str | None = None,
) -> EventStore:
    """Open the event store named by ``url``: a SQLite path (default), ``memory``, or a
    ``mongodb://`` URL.

    ``depth_retention`` (seconds, 0 for ever; ``None``: left as it is) is how long market
    data is kept after it was stored (MongoDB: a TTL index; SQLite deletes it about once a
    minute); a ``patient`` store retries an unreachable server for ever
    (services), an impatient one gives up after 15 seconds (one-shot commands).
    ``existing``: the option naming the store, for commands that read one (or set the kill
    switch): a SQLite file that is not there is then an error naming that option, rather
    than a new empty store (a mistyped path listed nothing, or halted no trader).
    """
    return store_parts(
        url, depth_retention=depth_retention, patient=patient, existing=existing
    ).adapter


def store_parts(
    url: str,
    *,
    depth_retention: float | None = None,
    patient: bool = True,
    existing: str | None = None,
) -> Parts[EventStore]:
    """Open the event store named by ``url`` (see :func:`open_store`) with its figures."""
    kind = store_kind(url)
    if kind == "memory":
        memory = InMemoryEventStore()
        return Parts(memory, checks=[store_check(memory, kind)])
    if kind == "mongodb":
        mongo = MongoEventStore(
            url,
            depth_retention=depth_retention,
            give_up_after=None if patient else 15.0,
            on_retry=lambda what, error, pause: warn(
                "store",
                "MongoDB unavailable, retrying",
                during=what,
                wait=f"{pause:.2f}s",
                error=redact(error.split(",")[0]),
            ),
            on_problem=lambda what, detail: warn("store", what, detail=detail),
        )

        def mongo_figures() -> list[Figure]:
            return [Figure("store_retries", "counter", "MongoDB operations retried.",
                           mongo.stats.retries)]  # fmt: skip

        return Parts(mongo, checks=[store_check(mongo, kind)], figures=[mongo_figures])
    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    if existing is not None and not Path(path).exists():
        raise ConfigurationError(existing, f"no store at {path!r} (nothing was created)")
    sqlite = SqliteEventStore(
        path,
        retention=depth_retention,
        on_problem=lambda what, detail: warn("store", what, detail=detail),
    )
    return Parts(sqlite, checks=[store_check(sqlite, kind)], figures=[sqlite_figures(sqlite)])


def sqlite_figures(store: SqliteEventStore) -> Figures:
    """Return the figures of a SQLite store: what its retention deleted, how often a write
    waited for another process's lock."""

    def figures() -> list[Figure]:
        what = "Market events deleted by the retention (SQLite)."
        waits = "Write transactions that waited for another writer's lock (SQLite)."
        return [
            Figure("expired_market_events", "counter", what, store.expired_events),
            Figure("store_lock_waits", "counter", waits, store.lock_waits),
        ]

    return figures


# --- market feeds ----------------------------------------------------------------------------


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


FeedParts = Parts[MarketFeed]
"""A market feed with its parts."""


def _skew(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.0f}ms"


def binance_feed_parts(feed: BinanceFeed, clock: Clock) -> FeedParts:
    """Return a Binance feed with its figures, progress-line part, summary and last error."""

    def figures() -> list[Figure]:
        f = feed.stats
        out = [
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
        return out

    def line() -> str:
        f = feed.stats
        return (
            f" connections={f.connections} reconnects={f.reconnects} silences={f.silences}"
            f" snapshots={f.snapshots} skew={_skew(f.clock_skew_ms)}"
        )

    def summary() -> dict[str, Any]:
        f = feed.stats
        return {
            "connections": f.connections,
            "reconnects": f.reconnects,
            "silences": f.silences,
            "snapshots": f.snapshots,
            "clock_skew_ms": None if f.clock_skew_ms is None else round(f.clock_skew_ms, 1),
        }

    def problem() -> str:
        if not feed.last_error:
            return ""
        ago = clock.monotonic() - feed.last_error_at
        return f"; last feed error {ago:.0f}s ago: {feed.last_error}"

    return FeedParts(feed, figures=[figures], line=line, summary=summary, problem=problem)


async def make_feed(
    settings: FeedSettings, store: EventStore, clock: Clock, *, app: str = "collector"
) -> FeedParts:
    """Build the market feed the settings name."""
    if settings.source.kind == "replay":
        assert settings.source.path is not None
        return FeedParts(ReplayFeed(settings.source.path, symbols=settings.symbols))
    if settings.source.kind == "binance":
        feed = BinanceFeed(
            settings.symbols,
            clock,
            ws_url=settings.binance_ws_url,
            rest_url=settings.binance_rest_url,
            notify=log_notices(app),
        )
        return binance_feed_parts(feed, clock)
    starts = await synthetic_starts(store, settings.symbols)
    if starts:
        log(app, "continuing the stored synthetic series", symbols=",".join(starts))
    return FeedParts(
        SyntheticFeed(
            settings.symbols,
            seed=settings.seed,
            starts=starts,
            step=SYNTHETIC_STEP_NS,
            tick=SYNTHETIC_TICK,
        )
    )


# --- Redis -----------------------------------------------------------------------------------


def redis_client(settings: RedisSettings) -> Redis:
    """Return a client for the URL (no I/O until first used); replies decoded to text."""
    return Redis.from_url(settings.url, decode_responses=True)


def redis_publisher(settings: RedisSettings, client: Redis) -> RedisSignalPublisher:
    """Return the signal publisher of the settings' stream."""
    return RedisSignalPublisher(client, stream=settings.stream, maxlen=settings.maxlen)


def redis_consumer(settings: RedisSettings, client: Redis) -> RedisSignalConsumer:
    """Return this process's member of the trader group."""
    return RedisSignalConsumer(
        client,
        stream=settings.stream,
        group=settings.group,
        consumer=settings.consumer,
        dead_letters=settings.dead_letters,
        claim_idle=settings.claim_idle,
        max_deliveries=settings.max_deliveries,
    )


def outbox_name(settings: RedisSettings) -> str:
    """Return the tracking name of the outbox relay for a signal stream."""
    return f"outbox:{settings.stream}"


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


# --- Binance trading -------------------------------------------------------------------------


def signer(settings: BinanceTradingSettings) -> Signer:
    """Return the request signer: Ed25519 when a private key is set, else HMAC."""
    if settings.private_key is not None:
        return Ed25519Signer(settings.private_key.read_bytes())
    return HmacSigner(settings.api_secret or "")


@dataclass
class Exchange:
    """Binance's order side and user data stream, with their check and figures."""

    gateway: BinanceGateway
    stream: BinanceUserStream
    checks: list[Check]
    figures: list[Figures]


def binance_exchange(settings: BinanceTradingSettings, clock: Clock) -> Exchange:
    """Build the Binance gateway and user data stream the trader trades through."""
    sign = signer(settings)
    gateway = BinanceGateway(
        settings.rest_url, settings.api_key, sign, clock=clock,
        recv_window_ms=settings.recv_window_ms,
    )  # fmt: skip
    stream = BinanceUserStream(
        settings.stream_url,
        settings.api_key,
        sign,
        timestamp_ms=gateway.server_time_ms,
        resync=gateway.sync_time,
        recv_window_ms=settings.recv_window_ms,
        notify=log_notices("trader"),
    )

    async def binance() -> str:
        await gateway.ping()
        if not stream.stats.connected:
            raise UnhealthyError(f"user data stream not connected: {stream.stats.last_error}")
        return f"REST answers, user data stream connected ({stream.stats.events} reports)"

    def figures() -> list[Figure]:
        g = gateway.stats
        return [
            Figure("exchange_requests", "counter", "REST requests to the exchange.", g.requests),
            Figure("exchange_duplicates_prevented", "counter",
                   "Orders a lookup found already placed.", g.found),
            Figure("exchange_uncertain", "counter", "Timeouts and 5xx answers.", g.uncertain),
            Figure("exchange_clock_resyncs", "counter", "Exchange clock measurements.",
                   g.resyncs),
            Figure("exchange_rate_limited", "counter", "Rate-limit waits.", g.rate_limited),
            Figure("exchange_rejections", "counter", "Orders rejected, by whom.",
                   labels=("by",), values=[(("rules",), g.rejected_by_rules),
                                           (("exchange",), g.rejected_by_exchange)]),
            Figure("user_stream_connections", "counter", "User data stream connections.",
                   stream.stats.connections),
            Figure("user_stream_rejected", "counter", "Malformed reports set aside.",
                   stream.stats.rejected),
        ]  # fmt: skip

    return Exchange(gateway, stream, [Check("binance", "dependency", binance)], [figures])
