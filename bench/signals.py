"""Signals over Redis: append-to-ack latency at 1,000 signals/s, and trader throughput."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import redis as sync_redis
from redis.asyncio import Redis

from algotrade.adapters.memory import SystemClock

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
from algotrade.domain.events import SignalEmitted
from algotrade.domain.ports import Delivery
from algotrade.domain.values import Side, TopOfBook
from algotrade.services.processor import OutboxRelay
from algotrade.services.trader import TraderService

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
        now = time.monotonic()
        for d in deliveries:
            self.acked_at[d.signal.signal_id] = now


async def _relay_at_rate(
    store: InMemoryEventStore, relay: OutboxRelay, count: int, rate: float
) -> dict[str, float]:
    """Append ``count`` signals at ``rate``/s, waking the relay; return append times."""
    appended: dict[str, float] = {}
    start = time.monotonic()
    for i in range(count):
        due = start + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            await anyio.sleep(wait)
        signal = make_signal(i)
        appended[signal.signal_id] = time.monotonic()
        await store.append([signal])
        relay.notify()
    return appended


def _percentiles(
    appended: dict[str, float], acked: dict[str, float], warmup: int
) -> dict[str, float]:
    ms = sorted((acked[k] - t) * 1000 for i, (k, t) in enumerate(appended.items()) if i >= warmup)
    return {
        "p50": statistics.median(ms),
        "p99": ms[int(len(ms) * 0.99) - 1],
        "max": ms[-1],
        "count": float(len(ms)),
    }


async def latency(
    url: str, count: int = 5000, rate: float = 1000.0, warmup: int = 500
) -> dict[str, float]:
    """Append signals at ``rate``/s; measure append -> trader acknowledgement, with the
    relay and the trader in this process (one event loop for both services).

    The first ``warmup`` signals (connections, group creation, first allocations) are
    sent but not counted: the figures are the steady state.
    """
    client = Redis.from_url(url, decode_responses=True)
    await client.flushdb()
    store = InMemoryEventStore()
    relay = OutboxRelay(store, RedisSignalPublisher(client), clock=SystemClock())
    consumer = TimedConsumer(RedisSignalConsumer(client, consumer="bench"))
    await consumer.inner.ensure_group()
    trader = TraderService(store, consumer, PaperGateway(FixedQuotes()), clock=SystemClock())
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run, stop)
        tg.start_soon(trader.run, stop)
        appended = await _relay_at_rate(store, relay, count, rate)
        with anyio.fail_after(30):
            while len(consumer.acked_at) < count:
                await anyio.sleep(0.01)
        stop.set()
    await client.aclose()
    return _percentiles(appended, consumer.acked_at, warmup)


async def _trader_process(url: str, count: int) -> None:
    """The trader side of :func:`latency_apart`: act on ``count`` signals, then print when
    each was acknowledged (``time.monotonic``, one clock for every process on Linux)."""
    client = Redis.from_url(url, decode_responses=True)
    consumer = TimedConsumer(RedisSignalConsumer(client, consumer="bench"))
    await consumer.inner.ensure_group()
    trader = TraderService(
        InMemoryEventStore(), consumer, PaperGateway(FixedQuotes()), clock=SystemClock()
    )
    print("ready", flush=True)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(trader.run, stop)
        with anyio.fail_after(60):
            while len(consumer.acked_at) < count:
                await anyio.sleep(0.01)
        stop.set()
    await client.aclose()
    print(json.dumps(consumer.acked_at), flush=True)


async def latency_apart(
    url: str, count: int = 5000, rate: float = 1000.0, warmup: int = 500
) -> dict[str, float]:
    """Like :func:`latency`, with the trader in a process of its own, as deployed (the
    processor's relay here, the trader there, each with its own event loop)."""
    client = Redis.from_url(url, decode_responses=True)
    await client.flushdb()
    child = subprocess.Popen(
        [sys.executable, __file__, "--trader", url, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the benchmark's trader process did not start")
        store = InMemoryEventStore()
        relay = OutboxRelay(store, RedisSignalPublisher(client), clock=SystemClock())
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run, stop)
            appended = await _relay_at_rate(store, relay, count, rate)
            with anyio.fail_after(30):
                while relay.published < count:
                    await anyio.sleep(0.01)
            stop.set()
        out, _ = await anyio.to_thread.run_sync(lambda: child.communicate(timeout=60))
        if child.returncode:
            raise RuntimeError(f"the benchmark's trader process failed ({child.returncode})")
    finally:
        if child.poll() is None:
            child.kill()
    await client.aclose()
    return _percentiles(appended, json.loads(out), warmup)


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
    trader = TraderService(
        store, consumer, PaperGateway(FixedQuotes()), batch_size=batch, clock=SystemClock()
    )
    start = time.perf_counter()
    while trader.stats.acknowledged < count:
        deliveries = await consumer.receive(batch, 1.0)
        await trader.handle(deliveries)
    elapsed = time.perf_counter() - start
    await client.aclose()
    assert trader.stats.orders == count
    return count / elapsed


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Return the run whose p99 is the median one (its own p50 and max with it)."""
    return sorted(runs, key=lambda r: r["p99"])[len(runs) // 2]


def run(count: int = 30_000, batch: int = 500, repeats: int = 3) -> tuple[dict[str, float], str]:
    """Measure latency, then raw and trader rates side by side; return figures and Markdown."""
    # As a service logs (one JSON line per order or problem), into a sink that costs no I/O.
    configure_logging(open(os.devnull, "w"), json=True)  # noqa: SIM115 - for the whole run
    tune_gc(latency=True)  # as `algotrade processor` and `algotrade trader` run
    with redis_url() as (url, _):
        aparts, ones = [], []
        for _ in range(repeats):
            aparts.append(anyio.run(latency_apart, url))
            ones.append(anyio.run(latency, url))
        apart, lat = _median_run(aparts), _median_run(ones)
        raws, traders = [], []
        for _ in range(repeats):
            publish_raw(url, count)
            raws.append(anyio.run(raw_rate, url, count, batch))
            publish_raw(url, count)
            traders.append(anyio.run(trader_rate, url, count, batch))
    figures = {
        **{f"latency_{k}": v for k, v in apart.items()},
        **{f"one_process_{k}": v for k, v in lat.items()},
        "raw": max(raws),
        "trader": max(traders),
    }
    lines = [
        "## Signals over Redis (loopback redis-server)",
        "",
        f"Latency: {int(apart['count']):,} signals (after 500 warm-up ones) appended to the",
        "store at 1,000/s, relayed by",
        "the outbox to `trade_signals_stream`, read by the trader's consumer group, acted upon",
        "(paper order stored, in-memory stores) and acknowledged; measured from the append",
        "to the `XACK` (`time.monotonic`, one clock for all processes). As deployed, the",
        "processor (which runs the relay) and the trader are two processes; the second row",
        "runs both in one process and one event loop, as this benchmark did before",
        "2026-11-26. Every process keeps Python's collector thresholds, as",
        "`algotrade processor` and `algotrade trader` do (`tune_gc(latency=True)`).",
        f"Each setup ran {repeats} times, alternately; each row is the run with the median p99.",
        "",
        "| setup | p50 | p99 | max |",
        "|---|---:|---:|---:|",
        f"| processor and trader processes | {apart['p50']:.2f} ms | {apart['p99']:.2f} ms"
        f" | {apart['max']:.2f} ms |",
        f"| one process | {lat['p50']:.2f} ms | {lat['p99']:.2f} ms | {lat['max']:.2f} ms |",
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
    if sys.argv[1:2] == ["--trader"]:  # the trader process of latency_apart
        configure_logging(open(os.devnull, "w"), json=True)  # noqa: SIM115 - whole process
        tune_gc(latency=True)  # as `algotrade trader` runs
        anyio.run(_trader_process, sys.argv[2], int(sys.argv[3]))
    else:
        print(run()[1])
