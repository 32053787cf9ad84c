"""The composition root of ``algotrade run`` (collector, processor and trader in one
process) and the market feed every collector builds.

``bootstrap_run`` builds real adapters only for the arguments left ``None``; tests call
the same functions with in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anyio
from redis.asyncio import Redis

from algotrade.adapters import speedups
from algotrade.adapters.binance.feed import BinanceFeed
from algotrade.adapters.memory import InMemorySignalBus, SystemClock
from algotrade.adapters.notices import Notice, Notify
from algotrade.adapters.replay import ReplayFeed
from algotrade.adapters.store_bus import PaperGateway
from algotrade.adapters.synthetic import SyntheticFeed, SyntheticStart
from algotrade.apps.common import (
    Progress,
    open_store,
    peak_rss_mib,
    rate,
    stop_after,
    stop_on_signals,
)
from algotrade.apps.logs import log, warn
from algotrade.apps.settings import FeedSettings, RedisSettings, RunSettings
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    SignalEmitted,
    TradeReceived,
    order_id_for,
)
from algotrade.domain.ports import (
    Clock,
    EventStore,
    MarketFeed,
    SignalConsumer,
    StoredEvent,
)
from algotrade.domain.streams import depth_stream, order_stream, trade_stream
from algotrade.domain.values import TopOfBook, decimal_text
from algotrade.services.collector import Collector
from algotrade.services.processor import OutboxRelay, ProcessorService
from algotrade.services.trader import TraderService

SYNTHETIC_STEP_NS = 100_000_000
SYNTHETIC_TICK = Decimal("0.01")


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


def log_notices(app: str) -> Notify:
    """Return what logs a connection adapter's notices: news at info, failures as warnings."""

    def notice(told: Notice) -> None:
        (warn if told.problem else log)(app, told.message, **told.fields)

    return notice


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
            notify=log_notices("collector"),
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
        # The bus lives and dies with the process: what an earlier run stored and did not
        # act upon (killed in between) goes first. Redis keeps its pending entries instead.
        unanswered = await signals_without_orders(store)
        if unanswered:
            log("run", "signals of an earlier run without an order: acting on them first",
                count=len(unanswered))  # fmt: skip
            await bus.publish(unanswered)
    else:
        client = settings.redis.client()
        relay = OutboxRelay(
            store,
            settings.redis.publisher(client),
            name=outbox_name(settings.redis),
            clock=clock,
        )
        consumer = settings.redis.consumer_for(client)
    processor = ProcessorService(
        store,
        settings.strategy.processor(),
        publisher=bus,
        on_signals=relay.notify if relay is not None else None,
        clock=clock,
    )

    async def on_stored(batch: Sequence[StoredEvent]) -> None:
        await processor.handle(batch)

    collector = Collector(
        feed, store, clock, speed=settings.feed.speed, on_stored=on_stored,
        synchronizer=speedups.synchronizer,
        backfill=feed if isinstance(feed, BinanceFeed) else None,
    )  # fmt: skip
    gateway = PaperGateway(CollectorQuotes(collector), fee_rate=settings.trading.fee)
    trader = TraderService(
        store, consumer, gateway, quantity=settings.trading.quantity, clock=clock
    )
    return Pipeline(store, feed, collector, processor, trader, bus, clock, relay, client)


async def signals_without_orders(store: EventStore) -> list[SignalEmitted]:
    """Return the stored signals that have no order yet, in store order."""
    out: list[SignalEmitted] = []
    after = 0
    while page := await store.read_all(after, limit=1000, types=(SignalEmitted,)):
        after = page[-1].position
        for stored in page:
            signal = stored.event
            if isinstance(signal, SignalEmitted) and not await store.last_event(
                order_stream(order_id_for(signal.signal_id))
            ):
                out.append(signal)
    return out


def outbox_name(redis: RedisSettings) -> str:
    """Return the tracking name of the outbox relay for a signal stream."""
    return f"outbox:{redis.stream}"


def book_tops(collector: Collector, shown: int = 3) -> str:
    """Return ``SYMBOL bid/ask`` of the first ``shown`` symbols (``syncing`` until a book is
    synchronised), for progress lines: the prices are what says that data flows."""
    symbols = collector.feed.symbols
    parts = []
    for symbol in symbols[:shown]:
        top = collector.top(symbol)
        parts.append(f"{symbol} {top.bid_price}/{top.ask_price}" if top else f"{symbol} syncing")
    if len(symbols) > shown:
        parts.append(f"+{len(symbols) - shown} more")
    return " ".join(parts)


def render_run(p: Pipeline, elapsed: float) -> str:
    """Return the one-line progress of a run."""
    c, pr, t = p.collector.stats, p.processor.stats, p.trader.stats
    return (
        f"[run] {elapsed:6.1f}s {book_tops(p.collector)} events={c.received:,}"
        f" ({rate(c.received, elapsed)})"
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
            "quantity": decimal_text(pos.quantity),
            "average_price": decimal_text(pos.average_price),
            "mark": None if mark is None else decimal_text(mark),
            "realised_pnl": decimal_text(pos.realised_pnl),
            "unrealised_pnl": decimal_text(unrealised),
            "fees_paid": decimal_text(pos.fees_paid),
            "net_pnl": decimal_text(pos.realised_pnl + unrealised - pos.fees_paid),
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
            tg.start_soon(stop_after, settings.duration, stop)
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
