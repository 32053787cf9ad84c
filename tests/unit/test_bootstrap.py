"""The composition root: each bootstrap builds only what it is not given, and what it
returns (checks, figures, summary) follows what it built, not what an adapter says it is."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from algotrade.adapters.memory import InMemoryEventStore, InMemorySignalBus, SystemClock
from algotrade.adapters.store_bus import PaperGateway
from algotrade.adapters.synthetic import SyntheticFeed
from algotrade.apps.bootstrap import (
    App,
    bootstrap_collector,
    bootstrap_processor,
    bootstrap_trader,
)
from algotrade.apps.common import SourceSpec
from algotrade.apps.settings import (
    CollectorSettings,
    FeedSettings,
    ProcessorSettings,
    ServiceSettings,
    StrategySettings,
    TraderSettings,
)
from algotrade.domain.bars import Interval
from algotrade.domain.events import OrderPlaced, SignalEmitted
from algotrade.domain.values import TopOfBook

pytestmark = pytest.mark.anyio
STRATEGY = StrategySettings(interval=Interval.parse("1m"), short=3, long=8)


def names(app: App) -> tuple[set[str], set[str]]:
    """Return the names of an app's checks and of the figures it exports now."""
    figures = {f.name for figures in app.figures for f in figures()}
    return {c.name for c in app.checks}, figures


async def run_until_done(app: App, stop_after: float | None = None) -> None:
    """Run an app's work to its end (or ``stop_after`` seconds), then close it."""
    stop = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            if stop_after is not None:

                async def later() -> None:
                    await anyio.sleep(stop_after)
                    stop.set()

                tg.start_soon(later)
            await app.work(stop)
            tg.cancel_scope.cancel()
    finally:
        await app.close()


async def test_a_collector_given_its_store_and_feed_builds_nothing_else() -> None:
    """Given a store and a feed, the collector app stores the feed's events there, checks the
    store as ``store`` and exports no live feed's figures."""
    store = InMemoryEventStore()
    feed = SyntheticFeed(("BTCUSDT",), seed=1, limit=2_000)
    settings = CollectorSettings(feed=FeedSettings(source=SourceSpec("synthetic")))
    app = await bootstrap_collector(settings, store=store, feed=feed, clock=SystemClock())
    checks, figures = names(app)
    assert checks == {"store", "market_data", "books"}
    assert {"market_events", "stored_events", "book_synced"} <= figures
    assert not figures & {"frames", "connections", "store_retries", "expired_market_events"}
    await run_until_done(app)
    summary = app.summary()
    assert summary["events"] >= 2_000  # the feed's, and the snapshot the collector asked for
    assert summary["stored"] == await store.head() > 0
    assert "connections" not in summary


async def test_the_store_a_bootstrap_opens_brings_its_own_check_and_figures(tmp_path: Path) -> None:
    """A store opened from the settings is checked under its kind's name, with its figures:
    SQLite its retention's, MongoDB its retries (no server needed to build it)."""
    sqlite = ProcessorSettings(
        strategy=STRATEGY, service=ServiceSettings(store=str(tmp_path / "a.db"))
    )
    app = await bootstrap_processor(sqlite, clock=SystemClock())
    try:
        assert names(app)[0] == {"sqlite", "processing"}
        assert "expired_market_events" in names(app)[1]
    finally:
        await app.close()
    mongo = ProcessorSettings(
        strategy=STRATEGY, service=ServiceSettings(store="mongodb://127.0.0.1:9/btc_data")
    )
    app = await bootstrap_processor(mongo, clock=SystemClock())
    try:
        assert names(app)[0] == {"mongodb", "processing"}
        assert "store_retries" in names(app)[1]
    finally:
        await app.close()


async def test_a_processor_given_a_bus_relays_its_signals_there() -> None:
    """Given a bus, the processor app relays every signal it stores to it (an outbox check
    and figures), with no Redis built."""
    store = InMemoryEventStore()
    collector = await bootstrap_collector(
        CollectorSettings(feed=FeedSettings(source=SourceSpec("synthetic"))),
        store=store, feed=SyntheticFeed(("BTCUSDT",), seed=3, limit=40_000), clock=SystemClock(),
    )  # fmt: skip
    await run_until_done(collector)
    bus = InMemorySignalBus()
    app = await bootstrap_processor(
        ProcessorSettings(strategy=STRATEGY), store=store, bus=bus, clock=SystemClock()
    )
    checks, figures = names(app)
    assert checks == {"store", "processing", "outbox"}
    assert {"published_signals", "outbox_backlog"} <= figures
    await run_until_done(app, stop_after=3.0)
    stored = await store.read_all(0, limit=10**6, types=(SignalEmitted,))
    assert stored
    assert app.summary()["published"] == bus.published == len(stored)


class Still:
    """A still book."""

    async def latest(self, symbol: str) -> TopOfBook | None:
        """Return the same top of book."""
        return TopOfBook(Decimal(100), Decimal(1), Decimal(101), Decimal(1))


async def test_a_trader_given_a_bus_and_a_gateway_places_one_order_per_signal() -> None:
    """Given a bus and a gateway, the trader app acts on the bus's signals through that
    gateway and builds neither Redis nor Binance (no consumer or exchange figures)."""
    from tests.contract.test_ports import signal

    store, bus = InMemoryEventStore(), InMemorySignalBus()
    await bus.publish([signal(1), signal(2)])
    app = await bootstrap_trader(
        TraderSettings(), store=store, bus=bus, gateway=PaperGateway(Still()), clock=SystemClock()
    )
    checks, figures = names(app)
    assert checks == {"store", "consumer"}
    assert "orders" in figures
    assert not figures & {"consumer_lag", "dead_letters", "exchange_requests", "working_orders"}
    await run_until_done(app, stop_after=2.0)
    orders = await store.read_all(0, types=(OrderPlaced,))
    assert [o.event.signal_id for o in orders] == [signal(1).signal_id, signal(2).signal_id]  # type: ignore[attr-defined]
    assert app.summary()["orders"] == 2
