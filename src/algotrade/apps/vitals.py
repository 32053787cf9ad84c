"""Each service's checks and figures: what ``/readyz`` probes and ``/metrics`` exports.

They read the use cases' own state (a collector's books and counters, a processor's lag,
a trader's backlog); what an adapter adds (a live feed's connections, MongoDB's retries,
the exchange's requests) comes with the adapter from :mod:`algotrade.apps.wiring`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from algotrade.adapters.redis import RedisSignalConsumer
from algotrade.apps.health import Check, UnhealthyError
from algotrade.apps.metrics import Figure, Figures
from algotrade.apps.settings import ServiceSettings
from algotrade.services.collector import Collector
from algotrade.services.orders import OrderFollower
from algotrade.services.processor import OutboxRelay, ProcessorService
from algotrade.services.trader import TraderService

GroupBacklog = Callable[..., Awaitable[tuple[int, int]]]
"""Reads a consumer group's lag and pending entries: ``await backlog(bound=...)``."""


def collector_checks(
    collector: Collector, settings: ServiceSettings, why: Callable[[], str] = lambda: ""
) -> list[Check]:
    """Return the collector's flow checks: fresh market data, every book synchronised.

    A failing check also says ``why()``: a live feed's last error (a refused connection, an
    unknown symbol's REST answer) and how long ago it happened.
    """
    clock = collector.clock

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


def _synced(collector: Collector, symbol: str) -> bool:
    sync = collector.books.get(symbol)
    return sync is not None and sync.synced


def collector_figures(collector: Collector) -> Figures:
    """Return the collector's counters and gauges, read at scrape time."""

    def figures() -> list[Figure]:
        c = collector.stats
        last = collector.last_event_at
        return [
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

    return figures


@dataclass
class Lag:
    events: int = 0


def processor_checks(
    service: ProcessorService, relay: OutboxRelay | None, settings: ServiceSettings, lag: Lag
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
        age = 0.0 if since is None or not relay.backlog else relay.clock.monotonic() - since
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


def processor_figures(service: ProcessorService, relay: OutboxRelay | None, lag: Lag) -> Figures:
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
            Figure("off_clock_events", "counter", "Market events kept out of bars: their "
                   "exchange time strays from their stream's clock.",
                   s.off_clock(service.processor.pipelines.values())),
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


@dataclass
class Backlog:
    lag: int = 0
    pending: int = 0


def trader_checks(
    settings: ServiceSettings, backlog: Backlog, group: GroupBacklog | None
) -> list[Check]:
    """Return the trader's flow check: consumer lag and pending entries under their bounds
    (``group``: how to read them; ``None`` when the trader follows the store)."""
    bounds = settings.bounds

    async def consuming() -> str:
        if group is None:
            return "following the store"
        backlog.lag, backlog.pending = await group(bound=bounds.max_lag + 1)
        problems = []
        if backlog.lag > bounds.max_lag:
            problems.append(f"lag {backlog.lag:,} entries (bound {bounds.max_lag:,})")
        if backlog.pending > bounds.max_pending:
            problems.append(f"{backlog.pending:,} pending (bound {bounds.max_pending:,})")
        if problems:
            raise UnhealthyError("; ".join(problems))
        return f"lag {backlog.lag}, pending {backlog.pending}"

    return [Check("consumer", "flow", consuming)]


def trader_figures(
    trader: TraderService,
    backlog: Backlog,
    consumer: RedisSignalConsumer | None = None,
    follower: OrderFollower | None = None,
) -> Figures:
    """Return the trader's counters and gauges, its Redis consumer's (``consumer``) and its
    order follower's when it trades on an exchange (the exchange's own are its parts')."""

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
        if consumer is not None:
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
        if follower is not None:
            out += [
                Figure("working_orders", "gauge", "Orders the exchange may still change.",
                       len(trader.working)),
                Figure("order_updates", "counter", "Exchange reports stored.",
                       follower.stats.updates),
                Figure("cancelled_orders", "counter",
                       "Working orders cancelled after --cancel-after.",
                       follower.stats.cancelled),
            ]  # fmt: skip
        return out

    return figures
