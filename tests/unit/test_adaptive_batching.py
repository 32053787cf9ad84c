"""The collector's batches adapt to the rate: a lone event is stored at once, a busy feed's
events wait for the store in larger batches, never longer than ``flush_interval``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from algotrade.adapters.memory import InMemoryEventStore, SystemClock
from algotrade.domain.events import Event, MarketEvent
from algotrade.domain.ports import AppendResult, RejectedInput, Tracking
from algotrade.services.collector import Collector
from tests.support.builders import diff, snapshot

pytestmark = pytest.mark.anyio


class QueueFeed:
    """A feed of the batches a test sends, one symbol, no snapshots of its own."""

    symbols = ("BTCUSDT",)
    rejected = 0

    def __init__(self, receive: MemoryObjectReceiveStream[list[MarketEvent]]) -> None:
        self.receive = receive

    def drain_rejects(self) -> list[RejectedInput]:
        return []

    async def batches(self) -> AsyncIterator[Sequence[MarketEvent]]:
        async for batch in self.receive:
            yield batch

    async def request_snapshot(self, symbol: str) -> None:
        return None


class SlowStore(InMemoryEventStore):
    """A store whose every append takes ``delay`` seconds; it records each append's size."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.sizes: list[int] = []

    async def append(
        self, events: Sequence[Event], *, tracking: Tracking | None = None
    ) -> AppendResult:
        await anyio.sleep(self.delay)
        self.sizes.append(len(events))
        return await super().append(events, tracking=tracking)


async def test_a_lone_event_is_stored_at_once_not_after_the_flush_interval() -> None:
    send, receive = anyio.create_memory_object_stream[list[MarketEvent]](100)
    store = SlowStore(0.0)
    collector = Collector(QueueFeed(receive), store, SystemClock(), flush_interval=30.0)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(collector.run, stop)
        await send.send([snapshot(10)])
        await send.send([diff(11, 11, bids=[("100", "2")])])
        with anyio.fail_after(2.0):  # no other frame comes: the flusher stores them
            while collector.stats.stored < 2:
                await anyio.sleep(0.001)
        stop.set()
        send.close()
    receive.close()
    assert store.sizes[:1] in ([1], [2])


async def trickle(store: SlowStore, diffs: int, every: float) -> Collector:
    """Run a collector (``flush_interval`` 0.25 s) on a snapshot and then ``diffs`` diffs,
    one each ``every`` seconds, until all are stored; return it."""
    send, receive = anyio.create_memory_object_stream[list[MarketEvent]](1000)
    collector = Collector(QueueFeed(receive), store, SystemClock(), flush_interval=0.25)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(collector.run, stop)
        await send.send([snapshot(10)])
        for uid in range(11, 11 + diffs):
            await send.send([diff(uid, uid, bids=[("100", str(uid))])])
            await anyio.sleep(every)
        with anyio.fail_after(5.0):
            while collector.stats.stored < diffs + 1:
                await anyio.sleep(0.005)
        stop.set()
        send.close()
    receive.close()
    return collector


async def test_a_busy_feed_is_stored_in_fewer_larger_batches_within_the_interval() -> None:
    """Appends of 20 ms each and a diff every millisecond: about one append per 100 ms of
    waiting (4x a write, 20 ms), not one per diff."""
    store = SlowStore(0.02)
    await trickle(store, 400, 0.001)
    assert sum(store.sizes) == 401
    assert len(store.sizes) < 100, store.sizes  # batched, not one append per diff
    assert max(store.sizes) < 401  # and not all at the end


async def test_a_quick_store_takes_a_trickle_event_by_event() -> None:
    """The same interval, a store that answers at once and a diff every 5 ms: each diff is
    stored on its own within a millisecond or two (a fixed 0.25 s interval would batch
    about 50 of them)."""
    store = SlowStore(0.0)
    await trickle(store, 50, 0.005)
    assert sum(store.sizes) == 51
    assert len(store.sizes) >= 40, store.sizes  # (a loaded machine may pair a few)
