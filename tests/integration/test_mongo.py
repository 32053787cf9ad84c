"""The MongoDB store under the conditions it exists for: two writers, an outage, retention.

The event store contract itself runs in ``tests/contract`` against every adapter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect

from algotrade.adapters.memory import InMemoryEventStore, SystemClock
from algotrade.adapters.mongo import MongoEventStore, documents
from algotrade.adapters.mongo import commits as mongo_commits
from algotrade.adapters.mongo.commits import Range
from algotrade.adapters.replay import ReplayFeed
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    TradeReceived,
    with_version,
)
from algotrade.domain.ports import EventStore
from algotrade.services.collector import Collector
from tests.support.builders import diff
from tests.support.servers import MongoServer, local_mongo, with_database

pytestmark = pytest.mark.anyio
SYMBOLS = ("BTCUSDT", "ETHUSDT", "DOTUSDT")
FOREVER = 0  # the recording is from 2021: any retention in days would expire it at once


def raw_db(url: str) -> AsyncDatabase[dict[str, Any]]:
    """Return the database a MongoDB URL names, through a client of its own."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    return client.get_default_database()


def mongo(url: str, **options: float) -> MongoEventStore:
    """Return a store keeping everything, with short timeouts for tests."""
    settings: dict[str, float] = {"depth_retention": FOREVER, "gap_timeout": 2.0}
    settings.update(options)
    return MongoEventStore(url, **settings)  # type: ignore[arg-type]  # all floats


async def everything(store: EventStore, *, at_least: int = 0, timeout: float = 10.0) -> list[Event]:
    """Return every stored event, in position order.

    With ``at_least``, keep reading until that many arrived or ``timeout`` passed: after
    an outage a range taken from the counter may never have been recorded (its answer
    was lost), and readers stop at it for ``gap_timeout`` before going on.
    """
    out: list[Event] = []
    after = 0
    deadline = anyio.current_time() + timeout
    while True:
        batch = await store.read_all(after, limit=1000)
        if not batch:
            if len(out) >= at_least or anyio.current_time() >= deadline:
                return out
            await anyio.sleep(0.1)
            continue
        out.extend(s.event for s in batch)
        assert all(a.position < b.position for a, b in itertools.pairwise(batch))
        assert batch[0].position > after
        after = batch[-1].position


async def reference(recording: Path) -> list[Event]:
    """Return what one collector alone stores from the recording."""
    store = InMemoryEventStore()
    await Collector(ReplayFeed(recording, symbols=SYMBOLS), store, SystemClock()).run(anyio.Event())
    return [s.event for s in await store.read_all(0, limit=1_000_000)]


def assert_contiguous(events: list[Event]) -> None:
    """Each symbol's depth diffs continue each other: no update id missing or repeated."""
    for symbol in SYMBOLS:
        diffs = sorted(
            (e for e in events if isinstance(e, DepthDiffReceived) and e.symbol == symbol),
            key=lambda e: e.final_update_id,
        )
        assert len(diffs) > 500
        for before, after in itertools.pairwise(diffs):
            assert after.first_update_id == before.final_update_id + 1


async def test_two_collectors_at_once_store_each_event_once(
    recording: Path, mongo_url: str
) -> None:
    """Two collectors replaying the same recording into one database store it once."""
    expected = await reference(recording)
    stores = [mongo(mongo_url), mongo(mongo_url)]
    collectors = [
        Collector(ReplayFeed(recording, symbols=SYMBOLS), s, SystemClock(), flush_size=300)
        for s in stores
    ]
    async with anyio.create_task_group() as tg:
        for collector in collectors:
            tg.start_soon(collector.run, anyio.Event())
    stored = await everything(stores[0])
    for s in stores:
        await s.close()

    assert sorted(e.id for e in stored) == sorted(e.id for e in expected)
    assert len({e.id for e in stored}) == len(stored)
    assert sum(c.stats.stored for c in collectors) == len(expected)
    assert sum(c.stats.duplicates for c in collectors) > 0  # they really did overlap
    assert_contiguous(stored)
    by_stream: dict[str, list[int]] = {}
    for event in stored:
        by_stream.setdefault(event.stream, []).append(event.version)
    for versions in by_stream.values():
        assert sorted(versions) == list(range(1, len(versions) + 1))


@pytest.fixture
def own_mongo() -> Iterator[MongoServer]:
    """Start a MongoDB of this test's own, which the test may stop and start again."""
    with tempfile.TemporaryDirectory(prefix="algotrade-outage-") as workdir:
        server = local_mongo(workdir)
        if server is None:
            pytest.skip("stopping MongoDB needs a local mongod or nx-27017")
        server.start()
        try:
            yield server
        finally:
            server.stop()


async def test_collector_survives_mongodb_going_away(
    recording: Path, own_mongo: MongoServer
) -> None:
    """MongoDB stops mid-run and comes back: everything stored once, the collector never ends."""
    expected = await reference(recording)
    store = mongo(with_database(own_mongo.url, "outage"), retry_max_delay=0.5)
    collector = Collector(
        ReplayFeed(recording, symbols=SYMBOLS), store, SystemClock(), speed=12.0, flush_size=200
    )
    finished = anyio.Event()
    stored_before = 0

    async def collect() -> None:
        await collector.run(anyio.Event())
        finished.set()

    async def outage() -> None:
        nonlocal stored_before
        while collector.stats.stored < 300:
            await anyio.sleep(0.05)
        await anyio.to_thread.run_sync(own_mongo.stop)
        stored_before = collector.stats.stored
        await anyio.sleep(2.0)
        assert not finished.is_set()
        await anyio.to_thread.run_sync(own_mongo.start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        tg.start_soon(outage)
    stored = await everything(store, at_least=len(expected))
    await store.close()

    assert 300 <= stored_before < len(expected)
    assert store.stats.retries > 0
    assert sorted(e.id for e in stored) == sorted(e.id for e in expected)
    assert len({e.id for e in stored}) == len(stored)
    assert_contiguous(stored)


async def test_readers_whose_waits_time_out_through_outages_keep_working(
    own_mongo: MongoServer,
) -> None:
    """Waits that time out while MongoDB is away (a processor's and a trader's polling)
    never cancel a driver call halfway: pymongo's asyncio server selection, cancelled there
    under Python 3.11, lost its topology lock and every reader after it failed with
    ``RuntimeError: cannot wait on un-acquired lock``, or hung on it."""
    store = mongo(with_database(own_mongo.url, "waits"), retry_max_delay=0.5)
    await store.head()
    errors: list[Exception] = []
    stop = anyio.Event()
    timeouts = iter(itertools.cycle([0.01, 0.05, 0.13, 0.3, 0.47]))

    async def reader() -> None:
        while not stop.is_set():
            try:
                await store.wait(10**9, next(timeouts))
            except Exception as e:  # any failure is the finding
                errors.append(e)
                return

    def outages() -> None:
        for _ in range(2):
            time.sleep(2.0)
            own_mongo.stop()
            time.sleep(3.0)
            own_mongo.start()

    with anyio.fail_after(90):  # without the fix the readers may also hang on the lock
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(reader)
            await anyio.to_thread.run_sync(outages)
            await anyio.sleep(2.0)
            stop.set()
        await store.append([diff(1, 1)])
        assert await store.wait(0, 10.0)
        await store.close()

    assert errors == []


@pytest.mark.parametrize("names_its_range", [True, False], ids=["current", "older-document"])
async def test_a_dead_writers_leftovers_neither_hide_nor_double_an_event(
    mongo_url: str, names_its_range: bool
) -> None:
    """A writer that died between inserting and committing leaves a pending range behind.

    Readers wait for it at most ``gap_timeout`` seconds and never show its documents; a
    second writer storing the same event is not fooled into calling it a duplicate. The
    same whether the leftover names its range's record (``commit``, as documents do now)
    or was written before documents did.
    """
    first = mongo(mongo_url, gap_timeout=0.5)
    await first.append([diff(1, 1)])
    # The dead writer: positions 2..3 taken, recorded as pending, one document inserted.
    db = raw_db(mongo_url)
    await db.counters.update_one({"_id": "position"}, {"$inc": {"value": 2}})
    await db.commits.insert_one({"_id": 2, "last": 3, "state": "pending"})
    leftover = documents.to_document(with_version(diff(2, 2), 2), 2)
    if names_its_range:
        leftover["commit"] = 2
    await db.depth.insert_one(leftover)

    reader = mongo(mongo_url, gap_timeout=0.5)
    assert [s.position for s in await reader.read_all(0)] == [1]  # not the pending document

    second = mongo(mongo_url, gap_timeout=0.5)
    result = await second.append([with_version(diff(2, 2), 2), with_version(diff(3, 3), 3)])
    assert result.duplicates == 0  # the leftover was not a stored event
    assert [s.position for s in result.stored] == [4, 5]
    assert second.stats.ranges_declared_dead == 1

    events = await everything(reader)
    assert [e.final_update_id for e in events if isinstance(e, DepthDiffReceived)] == [1, 2, 3]
    dead = await db.commits.find_one({"_id": 2})
    assert dead is not None
    assert (dead["state"], dead["by"]) == ("aborted", "reader")
    for s in (first, reader, second):
        await s.close()
    await db.client.close()


class _Finds(monitoring.CommandListener):
    """Records the filter of every ``find`` on the ``commits`` collection."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []
        self.active = True  # registered for good (pymongo has no unregister): muted after

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.active and event.command_name == "find" and event.command.get("find") == "commits":
            self.filters.append(dict(event.command.get("filter", {})))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_ranges_are_looked_up_by_id_never_scanned(mongo_url: str) -> None:
    """Readers and writers find a range's record by its ``_id``: a range query over
    ``commits`` costs a scan of every range ever written on some servers (nx-27017 took
    90 ms a query at 8,000 ranges), and readers poll for the head many times a second."""
    finds = _Finds()
    monitoring.register(finds)  # applies to clients created from now on
    writer, reader = mongo(mongo_url), mongo(mongo_url)
    for n in range(1, 41):
        await writer.append([diff(n, n)])
        if n % 10 == 0:
            await reader.head()
    events = await everything(reader)
    await writer.append([diff(40, 40)])  # a duplicate: checked against the stored one
    await writer.append([with_version(diff(41, 41), 0)])
    finds.active = False
    assert len(events) == 40
    by_id = [f for f in finds.filters if set(f) == {"_id"} and isinstance(f["_id"], int)]
    at_start = [f for f in finds.filters if f == {"state": "aborted"}]  # once per store
    assert len(by_id) >= 40  # at least each range once
    assert len(by_id) + len(at_start) == len(finds.filters), finds.filters
    for s in (writer, reader):
        await s.close()


@pytest.mark.parametrize("page", [500, 5], ids=["by-id", "by-page"])
async def test_commits_behind_the_checkpoint_are_pruned_and_stores_behind_jump_them(
    mongo_url: str, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``commits`` keeps an append's record only until the resolved checkpoint passes it (it
    grew for ever: about 430,000 records a day from one collector's 0.2 s batches). A
    writer that never reads checkpoints too; a store whose mark is behind the pruned
    records jumps to the checkpoint, learning the aborted ranges in between, instead of
    waiting ``gap_timeout`` and declaring committed ranges dead; a document whose record
    was pruned is a duplicate, not a leftover. A store far behind reads the records a page
    at a time (``page``), one near the head by ``_id``: both jump."""
    monkeypatch.setattr(mongo_commits, "_PAGE", page)
    behind = mongo(mongo_url, gap_timeout=60.0)
    assert await behind.head() == 0  # its mark stays at 0 while the others write
    writer = mongo(mongo_url, gap_timeout=60.0, checkpoint_every=20)
    for n in range(1, 31):
        await writer.append([diff(n, n)])
    # A writer that died while rolling back: its range recorded aborted, a leftover inside.
    db = raw_db(mongo_url)
    await db.counters.update_one({"_id": "position"}, {"$inc": {"value": 2}})
    await db.commits.insert_one({"_id": 31, "last": 32, "state": "aborted", "by": "writer"})
    leftover = documents.to_document(with_version(diff(1, 1, symbol="ETHUSDT"), 1), 31)
    await db.depth.insert_one({**leftover, "commit": 31})
    for n in range(31, 61):
        await writer.append([diff(n, n)])  # positions 33..62

    assert writer.stats.commits_pruned >= 40
    records = [d async for d in db.commits.find({})]
    assert len(records) <= 20 + 1, records  # at most a checkpoint's worth, and the aborted
    assert {"_id": 31, "last": 32, "state": "aborted", "by": "writer"} in records
    with anyio.fail_after(20):  # far less than gap_timeout: nothing waited out
        events = await everything(behind)
    assert [e.final_update_id for e in events if isinstance(e, DepthDiffReceived)] == list(
        range(1, 61)
    )
    assert {e.stream for e in events} == {"depth-BTCUSDT"}  # the leftover stays hidden
    assert behind.stats.ranges_declared_dead == 0
    assert await db.commits.count_documents({"by": "reader"}) == 0

    # A record pruned behind the checkpoint: its documents are committed.
    stored = await db.depth.find_one({"final_update_id": 5})
    assert stored is not None
    assert await db.commits.find_one({"_id": stored["commit"]}) is None
    assert await writer._settled("depth", stored) == "committed"
    for s in (behind, writer):
        await s.close()
    await db.client.close()


async def test_concurrent_writers_and_readers_see_every_event_once_while_commits_are_pruned(
    mongo_url: str,
) -> None:
    """Three writers (one symbol each) and three readers at different paces, checkpointing
    and pruning every 7 positions: every reader reads each event exactly once, in order of
    position, none declared dead, and ``commits`` stays small."""
    symbols = ("AAAUSDT", "BBBUSDT", "CCCUSDT")
    per_writer = 60
    stores = [mongo(mongo_url, gap_timeout=60.0, checkpoint_every=7) for _ in range(6)]
    writers, readers = stores[:3], stores[3:]
    seen: list[list[tuple[int, str]]] = [[] for _ in readers]
    done = anyio.Event()

    async def write(store: MongoEventStore, symbol: str) -> None:
        for n in range(1, per_writer + 1, 3):  # three diffs an append
            await store.append([diff(i, i, symbol=symbol) for i in range(n, n + 3)])
            await anyio.sleep(0.001 * (hash(symbol) % 5))

    async def read(store: MongoEventStore, out: list[tuple[int, str]], pause: float) -> None:
        after = 0
        while True:
            finished = done.is_set()  # read once more after the writers ended
            for stored in await store.read_all(after, limit=7):
                out.append((stored.position, stored.event.id))
                after = stored.position
            if finished and await store.head() == after:
                return
            await anyio.sleep(pause)

    with anyio.fail_after(45):  # well under gap_timeout: nothing was waited out
        async with anyio.create_task_group() as tg:
            for reader, out, pause in zip(readers, seen, (0.0, 0.02, 0.2), strict=True):
                tg.start_soon(read, reader, out, pause)
            async with anyio.create_task_group() as writing:
                for writer, symbol in zip(writers, symbols, strict=True):
                    writing.start_soon(write, writer, symbol)
            done.set()

    expected = {f"depth:test:{s}:{i}" for s in symbols for i in range(1, per_writer + 1)}
    for out in seen:
        assert [position for position, _ in out] == sorted({position for position, _ in out})
        assert sorted(event_id for _, event_id in out) == sorted(expected)
    assert sum(s.stats.ranges_declared_dead for s in stores) == 0
    assert sum(s.stats.commits_pruned for s in stores) > 0
    db = raw_db(mongo_url)
    assert await db.commits.count_documents({}) <= 2 * 7 * 3
    for s in stores:
        await s.close()
    await db.client.close()


async def test_a_backlog_of_commits_records_is_pruned_a_bounded_chunk_per_checkpoint(
    mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written before pruning holds a record per append ever made: each checkpoint
    deletes a bounded chunk of them (one delete of millions would outlast the socket
    timeout), until they are gone."""
    old = mongo(mongo_url, checkpoint_every=10**9)  # as before: nothing pruned
    for n in range(1, 31):
        await old.append([diff(n, n)])
    await old.close()
    db = raw_db(mongo_url)
    assert await db.commits.count_documents({}) == 30
    monkeypatch.setattr(mongo_commits, "_PRUNE", 8)
    store = mongo(mongo_url, checkpoint_every=2)
    await store.append([diff(31, 31)])
    await store.head()  # a checkpoint at 31: one chunk
    assert await db.commits.count_documents({}) == 31 - 8
    for n in range(32, 52):
        await store.append([diff(n, n)])
        await store.head()
    assert await db.commits.count_documents({}) < 5
    assert [s.position for s in await store.read_all(0, limit=100)] == list(range(1, 52))
    await store.close()
    await db.client.close()


async def test_a_commit_whose_answer_was_lost_is_kept_once_its_record_is_pruned(
    mongo_url: str,
) -> None:
    """A writer whose commit went through unanswered rolls back its range unless it finds
    it committed. Once readers checkpointed past the range and pruned its record, the
    checkpoint says so: the writer must not record it aborted and delete its events."""
    writer = mongo(mongo_url, checkpoint_every=1)
    await writer.append([diff(1, 1)])
    stored = await writer.append([diff(2, 2), diff(3, 3)])  # positions 2..3
    reader = mongo(mongo_url, checkpoint_every=1)
    assert await reader.head() == 3  # checkpointed at 3, records up to it pruned
    db = raw_db(mongo_url)
    assert await db.commits.count_documents({}) == 0
    # As if the answer to the commit of 2..3 had been lost: the range is still open.
    writer._open = Range(2, 3, collections={"depth"})
    await writer._abort_open()

    assert writer._open is None
    assert await db.commits.count_documents({"state": "aborted"}) == 0
    assert [s.position for s in stored.stored] == [2, 3]
    fresh = mongo(mongo_url)
    assert [s.position for s in await fresh.read_all(0)] == [1, 2, 3]
    for s in (writer, reader, fresh):
        await s.close()
    await db.client.close()


async def test_a_reader_waits_for_a_slow_writer_instead_of_skipping_it(mongo_url: str) -> None:
    """A range still pending blocks readers at it, so no later range is read past it."""
    slow = mongo(mongo_url, gap_timeout=30.0)
    fast = mongo(mongo_url, gap_timeout=30.0)
    db = raw_db(mongo_url)
    await db.counters.update_one({"_id": "position"}, {"$inc": {"value": 1}}, upsert=True)
    await db.commits.insert_one({"_id": 1, "last": 1, "state": "pending"})  # slow, in flight
    await fast.append([diff(5, 5)])
    assert await slow.read_all(0) == []
    assert await slow.head() == 0
    await db.commits.update_one({"_id": 1}, {"$set": {"state": "committed"}})
    assert [s.position for s in await slow.read_all(0)] == [2]
    for s in (slow, fast):
        await s.close()
    await db.client.close()


async def test_the_stand_in_gets_an_index_for_its_stream_queries(mongo_url: str) -> None:
    """nx-27017 scans a collection for a stream's highest versions unless ``stream`` has an
    index of its own; a real mongod uses ``(stream, version)`` and gets no extra index."""
    store = mongo(mongo_url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    stand_in = (await client.admin.command("buildInfo")).get("process") == "nx_27017"
    await client.close()
    for name in documents.ALL_COLLECTIONS:
        keys = [dict(i["key"]) for i in await store.indexes(name)]
        assert {"stream": 1, "version": 1} in keys
        assert ({"stream": 1} in keys) == stand_in
    await store.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=30), st.integers(0, 60))
def test_a_position_is_aborted_exactly_when_a_known_aborted_range_holds_it(
    lengths: list[int], gap: int
) -> None:
    """The binary search over aborted ranges agrees with looking at every range, whatever
    order the ranges became known in (no server needed: the client connects lazily)."""
    store = MongoEventStore("mongodb://127.0.0.1:1/x")
    ranges, first = [], 1
    for n, length in enumerate(lengths):
        if n % 2 == 0:  # every other range aborted, the others committed
            ranges.append((first, first + length - 1))
        first += length + (gap if n % 3 == 0 else 0)
    for a, b in reversed(ranges):
        store._add_aborted(a, b)
        store._add_aborted(a, b)  # learnt twice, kept once
    assert store._aborted == sorted(ranges)
    for position in range(first + 2):
        assert store._is_aborted(position) == any(a <= position <= b for a, b in ranges)


async def test_retention_counts_from_the_storing_time_like_sqlite(mongo_url: str) -> None:
    """Retention is a TTL index on stored_at, which every document carries: a replayed
    recording (receive times years old) is kept, not expired at once."""
    store = MongoEventStore(mongo_url)  # the default: 7 days
    ttl = [i for i in await store.indexes("depth") if "expireAfterSeconds" in i]
    assert [(dict(i["key"]), i["expireAfterSeconds"]) for i in ttl] == [
        ({"stored_at": 1}, 7 * 86400)
    ]
    old = [diff(i, i) for i in range(1, 4)]  # received in 1970
    before = dt.datetime.now(dt.UTC)
    await store.append(old)
    after = dt.datetime.now(dt.UTC)
    db = raw_db(mongo_url)
    docs = [d async for d in db.depth.find({})]
    assert len(docs) == 3  # the stand-in expires at once what is past its TTL
    for d in docs:
        assert d["received_at"] < before - dt.timedelta(days=365)
        assert before - dt.timedelta(milliseconds=1) <= d["stored_at"] <= after
    assert len(await store.read_stream(old[0].stream)) == 3
    await store.close()

    # Start-up makes the index match the setting, idempotently; 0 removes it.
    for retention, expected in ((3600.0, [3600]), (3600.0, [3600]), (0.0, [])):
        again = MongoEventStore(mongo_url, depth_retention=retention)
        found = [i for i in await again.indexes("depth") if dict(i["key"]) == {"stored_at": 1}]
        assert [i.get("expireAfterSeconds") for i in found] == expected
        await again.close()
    await db.client.close()


@pytest.mark.parametrize("cut_short", [False, True], ids=["older", "migration-cut-short"])
async def test_a_store_with_the_receive_time_ttl_of_older_versions_is_migrated(
    mongo_url: str, cut_short: bool
) -> None:
    """Older versions kept their TTL index on received_at and wrote no stored_at: start-up
    drops that index and counts those documents as stored now (the TTL monitor would keep
    a document without the field for ever), also when a migration ended before filling
    stored_at in (its new index made, the old one still there)."""
    now_ns = time.time_ns()
    events = [
        dataclasses.replace(diff(i, i), exchange_ts=now_ns, receive_ts=now_ns) for i in (1, 2)
    ]
    writer = MongoEventStore(mongo_url, depth_retention=0)  # no TTL index
    await writer.append(events)
    await writer.close()
    db = raw_db(mongo_url)
    await db.depth.update_many({}, {"$unset": {"stored_at": ""}})  # as an older version wrote
    await db.depth.create_index("received_at", expireAfterSeconds=86400, name="received_at_ttl")
    if cut_short:
        await db.depth.create_index("stored_at", expireAfterSeconds=3600, name="stored_at_ttl")
    started = dt.datetime.now(dt.UTC)

    store = MongoEventStore(mongo_url, depth_retention=3600)
    ttl = [dict(i["key"]) for i in await store.indexes("depth") if "expireAfterSeconds" in i]
    assert ttl == [{"stored_at": 1}]
    docs = [d async for d in db.depth.find({})]
    assert len(docs) == 2
    for d in docs:
        stored_at = d["stored_at"]
        if isinstance(stored_at, str):  # the nx-27017 stand-in stores a $set date as its text
            stored_at = dt.datetime.fromisoformat(stored_at).replace(tzinfo=dt.UTC)
        assert stored_at >= started - dt.timedelta(seconds=1)
    assert len(await store.read_stream(events[0].stream)) == 2
    await store.close()
    await db.client.close()


async def test_stored_documents_follow_the_documented_layout(mongo_url: str) -> None:
    """A depth document carries symbol, update ids, BSON dates, changes and top of book."""
    store = mongo(mongo_url)
    event = diff(7, 9, [("100.10", "0.5")], [("100.20", "0")])
    await store.append([event])
    db = raw_db(mongo_url)
    doc = await db.depth.find_one({})
    assert doc is not None
    assert doc["_id"] == event.id
    assert (doc["symbol"], doc["first_update_id"], doc["final_update_id"]) == ("BTCUSDT", 7, 9)
    assert isinstance(doc["event_time"], dt.datetime)
    assert doc["bids"] == [["100.10", "0.5"]]
    assert doc["asks"] == [["100.20", "0"]]
    assert {"best_bid", "best_ask", "position", "stream", "version", "type"} <= set(doc)
    await store.close()
    await db.client.close()


@pytest.fixture
async def seeded(mongo_url: str) -> AsyncIterator[MongoEventStore]:
    """Yield a store holding one snapshot and one trade."""
    store = mongo(mongo_url)
    snapshot = BookSnapshotTaken(
        stream="depth-BTCUSDT", version=0, exchange_ts=1, receive_ts=1, exchange="test",
        symbol="BTCUSDT", last_update_id=10, bids=(), asks=(),
    )  # fmt: skip
    trade = TradeReceived(
        stream="trades-BTCUSDT", version=0, exchange_ts=2, receive_ts=2, exchange="test",
        symbol="BTCUSDT", trade_id=5, price=Decimal("1.5"), quantity=Decimal(1),
        buyer_is_maker=True,
    )  # fmt: skip
    await store.append([snapshot, trade])
    yield store
    await store.close()


async def test_snapshots_and_trades_round_trip(seeded: MongoEventStore) -> None:
    """Snapshots share the depth collection; trades have their own."""
    events = await everything(seeded)
    assert [type(e).__name__ for e in events] == ["BookSnapshotTaken", "TradeReceived"]
    assert isinstance(events[0], BookSnapshotTaken)
    assert events[0].last_update_id == 10


class _LoseOneAnswer:
    """A collection whose first matching write is applied and then reported as failed."""

    def __init__(self, inner: Any, method: str, when: Callable[[tuple[Any, ...]], bool]) -> None:
        self._inner = inner
        self._method = method
        self._when = when
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != self._method or self.fired:
            return attr

        async def applied_then_lost(*args: Any, **kwargs: Any) -> Any:
            result = await attr(*args, **kwargs)
            if self._when(args):
                self.fired = True
                raise AutoReconnect("connection closed (injected after the write)")
            return result

        return applied_then_lost


@pytest.mark.parametrize(
    ("collection", "method", "when"),
    [
        ("commits", "update_one", lambda args: args[1] == {"$set": {"state": "committed"}}),
        ("depth", "insert_many", lambda args: True),
        ("counters", "find_one_and_update", lambda args: True),
    ],
    ids=["commit-answer-lost", "insert-answer-lost", "counter-answer-lost"],
)
async def test_a_write_whose_answer_is_lost_is_stored_once(
    mongo_url: str,
    collection: str,
    method: str,
    when: Callable[[tuple[Any, ...]], bool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server applied a write but the answer never came: the retry neither loses nor
    doubles anything."""
    store = mongo(mongo_url, retry_max_delay=0.05)
    await store.append([diff(1, 1)])
    real = store._coll  # injecting a fault at the driver boundary
    faulty = _LoseOneAnswer(real(collection), method, when)
    monkeypatch.setattr(store, "_coll", lambda name: faulty if name == collection else real(name))
    result = await store.append([diff(2, 2), diff(3, 3)])
    assert faulty.fired
    assert store.stats.retries == 1
    assert len(result.stored) + result.duplicates == 2
    reader = mongo(mongo_url, gap_timeout=0.5)
    # A range taken whose answer was lost is never recorded: readers wait gap_timeout for it.
    with anyio.fail_after(30):
        while len(events := await everything(reader)) < 3:
            await anyio.sleep(0.1)
    assert [e.final_update_id for e in events if isinstance(e, DepthDiffReceived)] == [1, 2, 3]
    assert [e.version for e in events] == [1, 2, 3]
    for s in (store, reader):
        await s.close()


@asynccontextmanager
async def freezable_proxy(upstream: str) -> AsyncIterator[tuple[int, list[bool]]]:
    """Relay TCP to ``host:port``; while ``frozen[0]`` holds, the server's answers are
    swallowed: connections stay open and say nothing (a server that hangs)."""
    host, port = upstream.rsplit(":", 1)
    frozen = [False]
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def relay(
        source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream, answers: bool
    ) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            async for chunk in source:
                if not (answers and frozen[0]):
                    await sink.send(chunk)

    async def serve(client: anyio.abc.ByteStream) -> None:
        with contextlib.suppress(Exception):
            async with (
                client,
                await anyio.connect_tcp(host, int(port)) as server,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(relay, client, server, False)
                tg.start_soon(relay, server, client, True)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield bound, frozen
        tg.cancel_scope.cancel()


async def test_a_server_that_stops_answering_is_an_outage_not_a_hang(mongo_url: str) -> None:
    """Connections open but silent (a hung or half-restarted server): the append times out,
    is retried, and completes once the server answers again; stored once."""
    address = mongo_url.split("://", 1)[1].split("/", 1)[0].split("@")[-1]
    async with freezable_proxy(address) as (port, frozen):
        url = mongo_url.replace(address, f"127.0.0.1:{port}", 1)
        store = mongo(url, socket_timeout=1.0, server_timeout=1.0, retry_max_delay=0.2)
        await store.append([diff(1, 1)])
        frozen[0] = True
        async with anyio.create_task_group() as tg:

            async def thaw() -> None:
                await anyio.sleep(3.0)
                frozen[0] = False

            tg.start_soon(thaw)
            with anyio.fail_after(30):  # without a socket timeout: for ever
                result = await store.append([diff(2, 2)])
        with anyio.fail_after(30):  # readers wait out the aborted attempt's range first
            while len(stored := await everything(store)) < 2:
                await anyio.sleep(0.1)
        await store.close()

    assert store.stats.retries > 0
    assert [s.event.id for s in result.stored] == [diff(2, 2).id]
    assert [e.id for e in stored] == [diff(1, 1).id, diff(2, 2).id]
