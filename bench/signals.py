"""Signals over Redis: append-to-ack latency at 1,000 signals/s, and trader throughput."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import redis as sync_redis
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.servers import redis_url

from algotrade.adapters.memory import InMemoryEventStore
from algotrade.adapters.redis import (
    SIGNAL_GROUP,
    SIGNAL_STREAM,
    RedisSignalConsumer,
    RedisSignalPublisher,
    signal_to_fields,
)
from algotrade.adapters.store_bus import PaperGateway
from algotrade.apps.common import tune_gc
from algotrade.apps.logs import configure_logging
from algotrade.apps.processor import OutboxRelay
from algotrade.apps.trader import TraderService
from algotrade.domain.events import Side, SignalEmitted, TopOfBook
from algotrade.domain.ports import Delivery

QUOTE = TopOfBook(Decimal("30000.00"), Decimal(1), Decimal("30000.01"), Decimal(1))


class FixedQuotes:
    """A quote source that always answers the same top of book."""

    async def latest(self, symbol: str) -> TopOfBook | None:
        """Return the fixed quote."""
        return QUOTE


def make_signal(i: int) -> SignalEmitted:
    """Return the i-th signal: alternating sides, distinct ids, stream version i + 1."""
    return SignalEmitted(
        stream="signals-BTCUSDT-1m-bench", version=i + 1, exchange_ts=i, receive_ts=i,
        signal_id=f"bench-{i}", symbol="BTCUSDT", interval="1m",
        side=Side.BUY if i % 2 == 0 else Side.SELL, price=Decimal("30000.00"),
        short_sma=1.0, long_sma=2.0, bar_time=i * 60_000_000_000, strategy="bench",
    )  # fmt: skip


class TimedConsumer:
    """Wraps a consumer; records when each signal was acknowledged."""

    def __init__(self, inner: RedisSignalConsumer) -> None:
        self.inner = inner
        self.acked_at: dict[str, float] = {}

    async def receive(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        """Delegate."""
        return await self.inner.receive(max_count, timeout)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge, then stamp every signal of the batch."""
        await self.inner.ack(deliveries)
        now = time.perf_counter()
        for d in deliveries:
            self.acked_at[d.signal.signal_id] = now


async def latency(
    url: str, count: int = 5000, rate: float = 1000.0, warmup: int = 500
) -> dict[str, float]:
    """Append signals at ``rate``/s; measure append -> trader acknowledgement.

    The first ``warmup`` signals (connections, group creation, first allocations) are
    sent but not counted: the figures are the steady state.
    """
    client = Redis.from_url(url, decode_responses=True)
    await client.flushdb()
    store = InMemoryEventStore()
    relay = OutboxRelay(store, RedisSignalPublisher(client))
    consumer = TimedConsumer(RedisSignalConsumer(client, consumer="bench"))
    await consumer.inner.ensure_group()
    trader = TraderService(store, consumer, PaperGateway(FixedQuotes()))
    appended: dict[str, float] = {}
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run, stop)
        tg.start_soon(trader.run, stop)
        start = time.perf_counter()
        for i in range(count):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await anyio.sleep(wait)
            signal = make_signal(i)
            appended[signal.signal_id] = time.perf_counter()
            await store.append([signal])
            relay.notify()
        with anyio.fail_after(30):
            while len(consumer.acked_at) < count:
                await anyio.sleep(0.01)
        stop.set()
    await client.aclose()
    ms = sorted(
        (consumer.acked_at[k] - t) * 1000
        for i, (k, t) in enumerate(appended.items())
        if i >= warmup
    )
    return {
        "p50": statistics.median(ms),
        "p99": ms[int(len(ms) * 0.99) - 1],
        "max": ms[-1],
        "count": float(len(ms)),
    }


def publish_raw(url: str, count: int) -> None:
    """Fill the stream with ``count`` signal entries (pipelined)."""
    client = sync_redis.Redis.from_url(url)
    client.flushdb()
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.xadd(SIGNAL_STREAM, signal_to_fields(make_signal(i)))  # type: ignore[arg-type]
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    client.xgroup_create(SIGNAL_STREAM, SIGNAL_GROUP, id="0")
    client.close()


async def raw_rate(url: str, count: int, batch: int) -> float:
    """Return entries/s of a bare XREADGROUP + XACK loop (redis-py, same batch size)."""
    client = Redis.from_url(url, decode_responses=True)
    seen = 0
    start = time.perf_counter()
    while seen < count:
        response: Any = await client.xreadgroup(
            SIGNAL_GROUP, "raw", {SIGNAL_STREAM: ">"}, count=batch, block=1000
        )
        for _, entries in response:
            await client.xack(SIGNAL_STREAM, SIGNAL_GROUP, *(e for e, _ in entries))
            seen += len(entries)
    elapsed = time.perf_counter() - start
    await client.aclose()
    return count / elapsed


async def trader_rate(url: str, count: int, batch: int) -> float:
    """Return signals/s of the trader (paper broker, in-memory store), batched reads and acks."""
    client = Redis.from_url(url, decode_responses=True)
    store = InMemoryEventStore()
    consumer = RedisSignalConsumer(client, consumer="bench")
    trader = TraderService(store, consumer, PaperGateway(FixedQuotes()), batch_size=batch)
    start = time.perf_counter()
    while trader.stats.acknowledged < count:
        deliveries = await consumer.receive(batch, 1.0)
        await trader.handle(deliveries)
    elapsed = time.perf_counter() - start
    await client.aclose()
    assert trader.stats.orders == count
    return count / elapsed


def run(count: int = 30_000, batch: int = 500, repeats: int = 3) -> tuple[dict[str, float], str]:
    """Measure latency, then raw and trader rates side by side; return figures and Markdown."""
    # As a service logs (one JSON line per order or problem), into a sink that costs no I/O.
    configure_logging(open(os.devnull, "w"), json=True)  # noqa: SIM115 - for the whole run
    tune_gc()  # as the services run (algotrade's CLI does the same)
    with redis_url() as (url, _):
        lat = anyio.run(latency, url)
        raws, traders = [], []
        for _ in range(repeats):
            publish_raw(url, count)
            raws.append(anyio.run(raw_rate, url, count, batch))
            publish_raw(url, count)
            traders.append(anyio.run(trader_rate, url, count, batch))
    figures = {
        **{f"latency_{k}": v for k, v in lat.items()},
        "raw": max(raws),
        "trader": max(traders),
    }
    lines = [
        "## Signals over Redis (loopback redis-server)",
        "",
        f"Latency: {int(lat['count']):,} signals (after 500 warm-up ones) appended to the",
        "store at 1,000/s, relayed by",
        "the outbox to `trade_signals_stream`, read by the trader's consumer group, acted upon",
        "(paper order stored) and acknowledged; measured from the append to the `XACK`.",
        "",
        "| p50 | p99 | max |",
        "|---:|---:|---:|",
        f"| {lat['p50']:.2f} ms | {lat['p99']:.2f} ms | {lat['max']:.2f} ms |",
        "",
        f"Throughput: {count:,} signals in the stream, read in batches of {batch} and",
        f"acknowledged per batch; best of {repeats} runs, the two measured alternately.",
        "",
        "| consumer | signals/s |",
        "|---|---:|",
        f"| redis-py `XREADGROUP` + `XACK` only | {figures['raw']:,.0f} |",
        f"| algotrade trader (decode, order, paper fill, store, ack) | {figures['trader']:,.0f} |",
        "",
        f"Trader / raw: **{figures['trader'] / figures['raw']:.2f}**.",
    ]
    return figures, "\n".join(lines)


if __name__ == "__main__":
    print(run()[1])
