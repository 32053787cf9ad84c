"""Every port with more than one implementation, one suite each, run against each: the
signal consumer (in-process bus, store bus, Redis), the order gateway (paper broker,
Binance against the fake exchange) and the market feed (synthetic, replay of a recording,
Binance against the fake exchange). The fakes pass the same tests as the real adapters."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis

from algotrade.adapters.binance.feed import BinanceFeed
from algotrade.adapters.binance.signing import HmacSigner
from algotrade.adapters.binance.trading import BinanceGateway
from algotrade.adapters.memory import InMemoryEventStore, InMemorySignalBus, SystemClock
from algotrade.adapters.redis import RedisSignalConsumer, RedisSignalPublisher
from algotrade.adapters.replay import RecordingSink, ReplayFeed
from algotrade.adapters.store_bus import PaperGateway, StoreSignalConsumer
from algotrade.adapters.synthetic import SyntheticFeed
from algotrade.domain.book import BookSynchronizer
from algotrade.domain.broker import Position
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    MarketEvent,
    OrderFilled,
    OrderPlaced,
    OrderUpdated,
    SignalEmitted,
)
from algotrade.domain.ports import Delivery, MarketFeed, OrderGateway, SignalConsumer
from algotrade.domain.streams import order_stream, stream_kind, stream_symbol
from algotrade.domain.values import OrderStatus, Side, TopOfBook, derived_id
from tests.support.fake_binance import FakeBinance
from tests.support.fake_trading import API_KEY, API_SECRET, FakeTrading

pytestmark = pytest.mark.anyio
D = Decimal


def signal(index: int) -> SignalEmitted:
    """Return the ``index``-th signal of a test series (alternating sides)."""
    return SignalEmitted(
        stream="signals-BTCUSDT-1m-test", version=index, exchange_ts=index, receive_ts=index,
        signal_id=derived_id("contract-signal", index), symbol="BTCUSDT", interval="1m",
        side=Side.BUY if index % 2 else Side.SELL, price=D(30_000 + index), short_sma=1.0,
        long_sma=2.0, bar_time=index, strategy="test",
    )  # fmt: skip


# --- the signal consumer -----------------------------------------------------------------------


@dataclass
class Bus:
    """A consumer, and how its signals get published (each kind publishes its own way)."""

    consumer: SignalConsumer
    publish: Callable[[Sequence[SignalEmitted]], Awaitable[None]]


@contextlib.asynccontextmanager
async def memory_bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """The in-process bus of ``algotrade run``."""
    bus = InMemorySignalBus(retry_wait=0.05, max_retry_wait=0.2)
    yield Bus(bus, bus.publish)


@contextlib.asynccontextmanager
async def store_bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """The trader following the store's signals (no Redis)."""
    store = InMemoryEventStore()

    async def publish(signals: Sequence[SignalEmitted]) -> None:
        await store.append(list(signals))

    yield Bus(StoreSignalConsumer(store, poll=0.01, max_retry_wait=0.2), publish)


@contextlib.asynccontextmanager
async def redis_bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A consumer group on a Redis stream of its own."""
    client = Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
    stream = f"contract-{uuid.uuid4().hex}"
    consumer = RedisSignalConsumer(
        client, stream=stream, dead_letters=f"{stream}-dead", claim_idle=0.1, claim_every=0.0
    )
    await consumer.ensure_group()
    try:
        yield Bus(consumer, RedisSignalPublisher(client, stream=stream).publish)
    finally:
        await client.delete(stream, f"{stream}-dead")
        await client.aclose()


BUSES = {"memory": memory_bus, "store": store_bus, "redis": redis_bus}


@pytest.fixture(params=sorted(BUSES))
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """Yield a signal consumer of each kind with its publisher."""
    async with BUSES[request.param](request) as made:
        yield made


async def received(
    consumer: SignalConsumer, count: int, *, batch: int = 10, ack: bool = False
) -> list[Delivery]:
    """Return the next ``count`` deliveries (several receives if need be; 10 s at most),
    acknowledging each batch before the next receive when ``ack`` (as the trader does: a
    consumer may take a receive with deliveries still open for "those were not acted on")."""
    out: list[Delivery] = []
    with anyio.fail_after(10):
        while len(out) < count:
            got = await consumer.receive(min(batch, count - len(out)), 0.2)
            if ack:
                await consumer.ack(got)
            out.extend(got)
    return out


async def test_signals_are_delivered_in_order_once_each(bus: Bus) -> None:
    """Published signals arrive in order, each once, first attempts, ``max_count`` at most."""
    signals = [signal(i) for i in range(1, 8)]
    await bus.publish(signals)
    first = await bus.consumer.receive(3, 1.0)
    assert 1 <= len(first) <= 3
    await bus.consumer.ack(first)
    rest = await received(bus.consumer, len(signals) - len(first), ack=True)
    deliveries = [*first, *rest]
    assert [d.signal for d in deliveries] == signals
    assert {d.attempt for d in deliveries} == {1}
    assert len({d.token for d in deliveries}) == len(signals)
    assert await bus.consumer.receive(10, 0.3) == []


async def test_a_receive_with_nothing_published_returns_nothing(bus: Bus) -> None:
    """A receive with nothing to deliver returns no delivery once its timeout passes."""
    assert await bus.consumer.receive(5, 0.1) == []


async def test_a_signal_published_while_waiting_is_delivered(bus: Bus) -> None:
    """A consumer waiting in receive gets a signal published meanwhile."""
    got: list[Delivery] = []

    async def wait() -> None:
        got.extend(await received(bus.consumer, 1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.1)
        await bus.publish([signal(1)])
    assert [d.signal for d in got] == [signal(1)]


async def test_what_is_not_acknowledged_comes_again_and_what_is_does_not(bus: Bus) -> None:
    """At least once: an unacknowledged delivery is handed out again with its attempt
    counted; an acknowledged one never again."""
    signals = [signal(i) for i in range(1, 4)]
    await bus.publish(signals)
    first = await received(bus.consumer, 3)
    await bus.consumer.ack(first[:1])
    again: list[Delivery] = []
    with anyio.fail_after(10):
        while len(again) < 2:
            again.extend(await bus.consumer.receive(10, 0.2))
    assert [d.signal for d in again] == signals[1:]
    assert all(d.attempt >= 2 for d in again)
    await bus.consumer.ack(again)
    assert await bus.consumer.receive(10, 0.5) == []


# --- the order gateway -------------------------------------------------------------------------


class FixedQuotes:
    """A still book: 30,000.00 bid, 30,001.00 ask."""

    async def latest(self, symbol: str) -> TopOfBook | None:
        """Return the same top of book for BTCUSDT, none for any other symbol."""
        if symbol != "BTCUSDT":
            return None
        return TopOfBook(D(30_000), D(1), D(30_001), D(1))


@contextlib.asynccontextmanager
async def paper_gateway() -> AsyncIterator[OrderGateway]:
    """The paper broker on a still book."""
    yield PaperGateway(FixedQuotes(), fee_rate=D("0.001"))


@contextlib.asynccontextmanager
async def binance_gateway() -> AsyncIterator[OrderGateway]:
    """Binance's gateway against the fake exchange (100,000 USDT, a still book)."""
    async with (
        FakeBinance(("BTCUSDT",), rate=20.0) as market,
        FakeTrading(market, balances={"USDT": "100000"}) as trading,
    ):
        market.pause()
        gateway = BinanceGateway(
            trading.rest_url,
            API_KEY,
            HmacSigner(API_SECRET),
            clock=SystemClock(),
            timeout=1.0,
            attempts=5,
        )
        try:
            yield gateway
        finally:
            await gateway.close()


GATEWAYS = {"paper": paper_gateway, "binance": binance_gateway}


@pytest.fixture(params=sorted(GATEWAYS))
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[OrderGateway]:
    """Yield an order gateway of each kind."""
    async with GATEWAYS[request.param]() as made:
        yield made


def market_buy(index: int, quantity: str = "0.01") -> OrderPlaced:
    """Return a market BUY of BTCUSDT for the ``index``-th signal."""
    order_id = derived_id("contract-order", index)
    return OrderPlaced(
        stream=order_stream(order_id), version=1, exchange_ts=index, receive_ts=index,
        order_id=order_id, signal_id=order_id, symbol="BTCUSDT", side=Side.BUY,
        quantity=D(quantity),
    )  # fmt: skip


def filled_quantity(outcome: object) -> Decimal | None:
    """Return what an outcome says was executed, or ``None`` when it is no fill."""
    if isinstance(outcome, OrderFilled):
        return outcome.quantity
    if isinstance(outcome, OrderUpdated) and outcome.status is OrderStatus.FILLED:
        return outcome.executed_quantity
    return None


async def test_a_market_order_is_filled_for_its_order(gateway: OrderGateway) -> None:
    """A market BUY on a book with liquidity is filled, in full, as the same order."""
    order = market_buy(1)
    outcome = await gateway.submit(order)
    assert outcome.order_id == order.order_id
    assert filled_quantity(outcome) == D("0.01")


async def test_submitting_an_order_again_gives_its_outcome_again(gateway: OrderGateway) -> None:
    """Idempotent per order id: the second submit reports the first one's outcome."""
    order = market_buy(2)
    first = await gateway.submit(order)
    second = await gateway.submit(order)
    assert (type(second), second.order_id, filled_quantity(second)) == (
        type(first), first.order_id, filled_quantity(first),
    )  # fmt: skip


async def test_balance_and_dust_are_non_negative_amounts(gateway: OrderGateway) -> None:
    """The free quote balance is an amount (or unknown) and the dust a non-negative one."""
    free = await gateway.free_quote("BTCUSDT", Position("BTCUSDT"))
    assert free is None or free > 0
    dust = await gateway.dust("BTCUSDT")
    assert isinstance(dust, Decimal)
    assert dust >= 0


# --- the market feed -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def synthetic_feed(tmp_path: Path) -> AsyncIterator[MarketFeed]:
    """The seeded synthetic market, 3,000 events."""
    yield SyntheticFeed(("BTCUSDT", "ETHUSDT"), seed=3, limit=3_000)


@contextlib.asynccontextmanager
async def binance_feed(
    tmp_path: Path, recorder: RecordingSink | None = None
) -> AsyncIterator[MarketFeed]:
    """Binance's feed against the fake exchange (recording what it receives, if asked)."""
    async with FakeBinance(("BTCUSDT", "ETHUSDT"), rate=200.0, seed=5) as exchange:
        feed = BinanceFeed(
            ("BTCUSDT", "ETHUSDT"),
            SystemClock(),
            ws_url=exchange.ws_url,
            rest_url=exchange.rest_url,
            recorder=recorder.write if recorder is not None else None,
        )
        async with feed:
            yield feed


@contextlib.asynccontextmanager
async def replay_feed(tmp_path: Path) -> AsyncIterator[MarketFeed]:
    """A replay of a session recorded from the fake exchange by Binance's feed."""
    path = tmp_path / "session.raw"
    sink = RecordingSink(path)
    async with binance_feed(tmp_path, sink) as live:
        await first_events(live, 400)
    sink.close()
    yield ReplayFeed(path, symbols=("BTCUSDT", "ETHUSDT"))


FEEDS = {"synthetic": synthetic_feed, "replay": replay_feed, "binance": binance_feed}


@pytest.fixture(params=sorted(FEEDS))
async def feed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MarketFeed]:
    """Yield a market feed of each kind, on BTCUSDT and ETHUSDT."""
    async with FEEDS[request.param](tmp_path) as made:
        yield made


async def first_events(feed: MarketFeed, count: int) -> list[MarketEvent]:
    """Ask for each symbol's snapshot (as the collector does), then return the first
    ``count`` events the feed yields (20 s at most)."""
    for symbol in feed.symbols:
        await feed.request_snapshot(symbol)
    out: list[MarketEvent] = []
    with anyio.fail_after(20):
        batches = feed.batches()
        try:
            async for batch in batches:
                out.extend(batch)
                if len(out) >= count:
                    break
        finally:
            await batches.aclose()  # type: ignore[attr-defined]  # an async generator
    return out[:count]


async def test_every_event_is_a_new_market_event_of_a_symbol_asked_for(feed: MarketFeed) -> None:
    """Events are market events of the feed's symbols, not yet stored (version 0), each in
    its symbol's market stream."""
    events = await first_events(feed, 300)
    assert len(events) == 300
    assert {e.symbol for e in events} <= set(feed.symbols) == {"BTCUSDT", "ETHUSDT"}
    assert {e.version for e in events} == {0}
    for e in events:
        kind = stream_kind(e.stream)
        assert kind is not None
        assert kind.market
        assert stream_symbol(e.stream) == e.symbol


async def test_each_book_synchronises_and_depth_ids_only_grow(feed: MarketFeed) -> None:
    """The events synchronise a book per symbol (a snapshot, then diffs continuing it), and
    each symbol's depth diffs come with growing update ids."""
    events = await first_events(feed, 400)
    exchange = events[0].exchange
    books = {s: BookSynchronizer(s, exchange=exchange) for s in feed.symbols}
    for e in events:
        if isinstance(e, BookSnapshotTaken):
            books[e.symbol].on_snapshot(e)
        elif isinstance(e, DepthDiffReceived):
            books[e.symbol].on_diff(e)
    assert {s: b.synced for s, b in books.items()} == {"BTCUSDT": True, "ETHUSDT": True}
    for symbol in feed.symbols:
        ids = [e.final_update_id for e in events
               if isinstance(e, DepthDiffReceived) and e.symbol == symbol]  # fmt: skip
        assert ids
        assert all(a < b for a, b in itertools.pairwise(ids))


async def test_a_clean_source_sets_nothing_aside(feed: MarketFeed) -> None:
    """A source with no malformed input counts no reject and hands none over."""
    await first_events(feed, 200)
    assert feed.rejected == 0
    assert feed.drain_rejects() == []
