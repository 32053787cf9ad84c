"""One contract for the event store port, run unchanged against every adapter."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from algotrade.adapters.memory import InMemoryEventStore
from algotrade.adapters.mongo import MongoEventStore
from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.apps.wiring import open_store, sqlite_figures
from algotrade.domain.errors import ConcurrencyError, StoreError
from algotrade.domain.events import (
    BarClosed,
    DepthDiffReceived,
    Event,
    SequenceGapDetected,
    TradeReceived,
    with_version,
)
from algotrade.domain.ports import EventStore, Tracking
from algotrade.domain.values import GapReason, TopOfBook
from tests.support.builders import D, bar, diff, snapshot

pytestmark = pytest.mark.anyio

Factory = Callable[[Path, pytest.FixtureRequest], EventStore]
FACTORIES: dict[str, Factory] = {
    "memory": lambda _, __: InMemoryEventStore(),
    "sqlite": lambda tmp, _: SqliteEventStore(tmp / "events.db"),
    # retention 0: the events here are dated 1970, and a TTL index would expire them
    "mongodb": lambda _, request: MongoEventStore(
        request.getfixturevalue("mongo_url"), depth_retention=0
    ),
}


@pytest.fixture(params=sorted(FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    """Yield a fresh store of each kind (MongoDB: a database of its own)."""
    s = FACTORIES[request.param](tmp_path, request)
    yield s
    await s.close()


def trade(trade_id: int, version: int = 0, symbol: str = "BTCUSDT") -> TradeReceived:
    """Return a trade at a stream version (0: append at the end)."""
    return TradeReceived(
        stream=f"trades-{symbol}",
        version=version,
        exchange_ts=trade_id,
        receive_ts=trade_id,
        exchange="test",
        symbol=symbol,
        trade_id=trade_id,
        price=D("1.5"),
        quantity=D(1),
        buyer_is_maker=False,
    )


async def test_append_assigns_positions_and_versions_in_order(store: EventStore) -> None:
    """Positions are global and gapless; version 0 means 'next version of the stream'."""
    result = await store.append([trade(1), trade(2), diff(1, 1), trade(3)])
    assert [s.position for s in result.stored] == [1, 2, 3, 4]
    assert [s.event.version for s in result.stored] == [1, 2, 1, 3]
    assert await store.head() == 4
    events = await store.read_stream("trades-BTCUSDT")
    assert [e.trade_id for e in events if isinstance(e, TradeReceived)] == [1, 2, 3]
    assert [e.version for e in events] == [1, 2, 3]


async def test_read_all_from_a_position_with_type_filter(store: EventStore) -> None:
    """read_all returns events after a position, in order, optionally of some types only."""
    await store.append([trade(1), diff(1, 1), trade(2), diff(2, 2), trade(3)])
    after_two = await store.read_all(2)
    assert [s.position for s in after_two] == [3, 4, 5]
    depth = await store.read_all(0, types=(DepthDiffReceived,))
    assert [s.position for s in depth] == [2, 4]
    limited = await store.read_all(0, limit=2)
    assert [s.position for s in limited] == [1, 2]


async def test_stored_events_equal_the_appended_ones(store: EventStore) -> None:
    """What comes back is what went in, exact decimals included."""
    event = diff(5, 9, [("100.10", "0.001")], [("100.20", "0")])
    await store.append([event])
    (back,) = await store.read_all(0)
    assert back.event == with_version(event, 1)
    assert await store.last_event("depth-BTCUSDT") == with_version(event, 1)
    assert await store.last_event("nothing") is None


async def test_optimistic_concurrency(store: EventStore) -> None:
    """A different event at an occupied version fails the whole batch and stores nothing."""
    await store.append([trade(1, 1), trade(2, 2)])
    with pytest.raises(ConcurrencyError) as caught:
        await store.append([trade(9, 1, "ETHUSDT"), trade(3, 2)])
    assert (caught.value.stream, caught.value.version) == ("trades-BTCUSDT", 2)
    assert await store.head() == 2
    assert await store.read_stream("trades-ETHUSDT") == []
    with pytest.raises(ConcurrencyError):
        await store.append([trade(4, 4)])  # a version gap is refused too


async def test_idempotent_reappend(store: EventStore) -> None:
    """Appending an already stored event is a counted duplicate, not an error."""
    first = await store.append([trade(1, 1), trade(2, 2)])
    again = await store.append([trade(1, 1), trade(2, 2), trade(3, 3)])
    assert first.duplicates == 0
    assert again.duplicates == 2
    assert [s.event.version for s in again.stored] == [3]
    assert await store.head() == 3
    auto = await store.append([trade(3), trade(4)])
    assert auto.duplicates == 1
    assert [s.event.version for s in auto.stored] == [4]


async def test_tracking_is_stored_with_events(store: EventStore) -> None:
    """A consumer's position is recorded atomically with what it produced."""
    assert await store.tracking_position("trader") == 0
    await store.append([trade(1)], tracking=Tracking("trader", 41))
    await store.append([], tracking=Tracking("trader", 42))
    assert await store.tracking_position("trader") == 42
    assert await store.tracking_position("other") == 0


async def test_wait_follows_new_events(store: EventStore) -> None:
    """wait returns True soon after an append, False when nothing comes."""
    assert await store.wait(0, 0.05) is False

    async def append_later() -> None:
        await anyio.sleep(0.05)
        await store.append([trade(1)])

    async with anyio.create_task_group() as tg:
        tg.start_soon(append_later)
        assert await store.wait(0, 5.0) is True
    assert await store.head() == 1


async def test_read_stream_after_version_and_limit(store: EventStore) -> None:
    """read_stream pages through a stream by version."""
    events: list[Event] = [trade(i) for i in range(1, 6)]
    await store.append(events)
    page = await store.read_stream("trades-BTCUSDT", after_version=2, limit=2)
    assert [e.version for e in page] == [3, 4]


async def test_read_all_without_levels_keeps_every_other_field(store: EventStore) -> None:
    """`levels=False` (a reader of the top of book): a store that decodes documents returns
    depth diffs without their levels and every other field as stored; snapshots and trades
    come whole, and the default read has everything."""
    top = TopOfBook(D("100"), D("2"), D("101"), D("3"))
    appended: list[Event] = [
        snapshot(100),
        dataclasses.replace(diff(101, 102, [("100", "2")], [("101", "3")]), top=top),
        trade(1),
    ]
    await store.append(appended)
    full = [s.event for s in await store.read_all(0)]
    lean = [s.event for s in await store.read_all(0, levels=False)]
    assert [(e.stream, e.id) for e in full] == [(e.stream, e.id) for e in appended]
    diff_full, diff_lean = full[1], lean[1]
    assert isinstance(diff_full, DepthDiffReceived)
    assert isinstance(diff_lean, DepthDiffReceived)
    levels = (((D("100"), D("2")),), ((D("101"), D("3")),))
    assert (diff_full.bids, diff_full.asks) == levels
    in_memory = isinstance(store, InMemoryEventStore)  # nothing to decode: levels kept
    assert (diff_lean.bids, diff_lean.asks) == (levels if in_memory else ((), ()))
    assert dataclasses.replace(diff_lean, bids=diff_full.bids, asks=diff_full.asks) == diff_full
    assert diff_lean.top == top
    assert (lean[0], lean[2]) == (full[0], full[2])


async def test_sqlite_store_survives_reopening(tmp_path: Path) -> None:
    """The embedded store is durable: a reopened file has everything, in order."""
    path = tmp_path / "durable.db"
    first = SqliteEventStore(path)
    await first.append([trade(1), trade(2)], tracking=Tracking("t", 2))
    await first.close()
    second = SqliteEventStore(path)
    assert [s.position for s in await second.read_all(0)] == [1, 2]
    assert await second.tracking_position("t") == 2
    result = await second.append([trade(3)])
    assert result.stored[0].position == 3
    await second.close()


async def test_an_append_costs_the_same_however_many_segments_the_store_holds(
    tmp_path: Path,
) -> None:
    """SQLite's virtual-machine steps for one append (deterministic, unlike time) on a store
    of 100 market segments and of 3,000: the same. Finding the head read every segment
    (MAX(last), no index), and a live collector appends a small segment up to 20 times a
    second: the lookup alone took 8.7 ms at 100,000 segments and grew with the store
    (`bench/sqlite_growth.py`), so a collector fell behind within a day."""
    store = SqliteEventStore(tmp_path / "segments.db")
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    costs = []
    appended = 0
    try:
        for size in (100, 3000):
            while appended < size:
                appended += 1
                await store.append([trade(appended)])
            store._db.set_progress_handler(step, 1)  # called at every VM instruction
            steps = 0
            appended += 1
            await store.append([trade(appended)])
            store._db.set_progress_handler(None, 1)
            costs.append(steps)
    finally:
        await store.close()
    assert costs[1] < costs[0] * 1.2, costs


async def test_sqlite_retention_deletes_market_data_stored_longer_than_it(tmp_path: Path) -> None:
    """With a one-hour retention, market data stored over an hour ago is deleted by the next
    append (at most once a minute); other events stay, and positions go on where they were.
    `--depth-retention` used to do nothing on SQLite: the default store grew for ever."""
    t = 1_000_000.0
    clock = [t]
    store = SqliteEventStore(tmp_path / "kept.db", retention=3600.0, now=lambda: clock[0])

    async def positions() -> list[int]:
        return [s.position for s in await store.read_all(0)]

    try:
        await store.append([trade(1), trade(2)])  # positions 1-2, stored at t
        await store.append([bar(100, 0)])  # position 3: not market data
        clock[0] = t + 1800
        await store.append([trade(3)])  # position 4: nothing an hour old yet
        assert await positions() == [1, 2, 3, 4]
        clock[0] = t + 3601
        await store.append([trade(4)])  # position 5: 1-2 are over an hour old
        assert await positions() == [3, 4, 5]
        assert [s.position for s in await store.read_all(1, limit=2)] == [3, 4]
        assert store.expired_events == 2
        clock[0] = t + 5399  # a deletion: position 4 is not an hour old yet
        await store.append([trade(5)])
        clock[0] = t + 5420  # position 4 is, but the last deletion was 21 s ago
        await store.append([trade(6)])
        assert await positions() == [3, 4, 5, 6, 7]
        clock[0] = t + 5460  # a minute after it: position 4 goes
        await store.append([trade(7)])
        assert await positions() == [3, 5, 6, 7, 8]
        last = await store.last_event("trades-BTCUSDT")
        assert isinstance(last, TradeReceived)
        assert (last.trade_id, last.version) == (7, 7)
    finally:
        await store.close()


async def test_sqlite_retention_keeps_the_newest_segment_so_no_position_is_given_twice(
    tmp_path: Path,
) -> None:
    """Everything expired and an append of tracking only: the newest segment stays (it holds
    the highest position), so the next event is stored after it, not at a reused position
    that a reader already went past."""
    clock = [1_000_000.0]
    store = SqliteEventStore(tmp_path / "newest.db", retention=60.0, now=lambda: clock[0])
    try:
        await store.append([trade(1)])
        await store.append([trade(2), trade(3)])
        clock[0] += 3600
        await store.append([], tracking=Tracking("reader", 3))  # deletes, keeps the newest
        assert [s.position for s in await store.read_all(0)] == [2, 3]
        result = await store.append([trade(4)])
        assert result.stored[0].position == 4
    finally:
        await store.close()


async def test_a_failed_deletion_is_told_and_tried_again_a_minute_later(tmp_path: Path) -> None:
    """A deletion of expired market data that fails (here: refused by an authorizer) leaves
    the append that triggered it stored, is told to ``on_problem``, and the next minute's
    deletion succeeds."""
    clock = [1_000_000.0]
    told: list[tuple[str, str]] = []
    store = SqliteEventStore(
        tmp_path / "refused.db",
        retention=60.0,
        now=lambda: clock[0],
        on_problem=lambda what, detail: told.append((what, detail)),
    )

    def no_deletes(action: int, *_: object) -> int:
        return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_DELETE else sqlite3.SQLITE_OK

    try:
        await store.append([trade(1)])
        clock[0] += 3600
        store._db.set_authorizer(no_deletes)
        result = await store.append([trade(2)])
        store._db.set_authorizer(None)
        assert result.stored[0].position == 2
        assert [s.position for s in await store.read_all(0)] == [1, 2]
        assert told == [("expired market data not deleted, retrying in a minute", "not authorized")]
        assert store.expired_events == 0
        clock[0] += 60
        await store.append([trade(3)])
        assert [s.position for s in await store.read_all(0)] == [2, 3]
        assert store.expired_events == 1
    finally:
        await store.close()


async def test_a_writer_waits_for_anothers_lock_without_blocking_its_event_loop(
    tmp_path: Path,
) -> None:
    """While another process holds the write lock, an append waits for it in short async
    sleeps (the loop's other tasks go on), stores once the lock is released, and fails with
    a clear error only after ``lock_timeout``."""
    path = tmp_path / "shared.db"
    store = SqliteEventStore(path)
    other = sqlite3.connect(path, isolation_level=None)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.001)
            ticks += 1

    try:
        other.execute("BEGIN IMMEDIATE")
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            tg.start_soon(_release_after, other, 0.1)
            started = anyio.current_time()
            result = await store.append([trade(1)])
            waited = anyio.current_time() - started
            tg.cancel_scope.cancel()
        assert [s.position for s in result.stored] == [1]
        assert 0.1 <= waited < 0.5, waited  # woken within a few ms of the release
        assert ticks >= 20, ticks  # the loop turned while the append waited
        assert store.lock_waits == 1
        store.lock_timeout = 0.05
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match=r"cannot start a write on .*locked"):
            await store.append([trade(2)])
        other.execute("ROLLBACK")
        assert [s.position for s in (await store.append([trade(2)])).stored] == [2]
    finally:
        other.close()
        await store.close()


async def _release_after(connection: sqlite3.Connection, seconds: float) -> None:
    await anyio.sleep(seconds)
    connection.execute("COMMIT")


async def test_the_collector_exports_the_market_events_the_retention_deleted(
    tmp_path: Path,
) -> None:
    """`algotrade_expired_market_events_total` counts what the SQLite retention deleted
    (the figure the wiring gives every SQLite store it opens)."""
    clock = [1_000_000.0]
    store = SqliteEventStore(tmp_path / "metric.db", retention=60.0, now=lambda: clock[0])
    try:
        await store.append([trade(1), trade(2)])
        clock[0] += 3600
        await store.append([trade(3)])
        figures = {f.name: f.value for f in sqlite_figures(store)()}
    finally:
        await store.close()
    assert figures["expired_market_events"] == 2


async def test_a_store_written_before_retention_opens_and_keeps_its_old_segments(
    tmp_path: Path,
) -> None:
    """A file whose segments have no storing time gains the column on opening; those
    segments are kept (their age is unknown), newer ones expire."""
    path = tmp_path / "old.db"
    clock = [1_000_000.0]
    store = SqliteEventStore(path)
    await store.append([trade(1)])
    await store.close()
    # As the file was before the column existed. ``with connect()`` commits but does not
    # close: Python 3.13 warns of the connection left open (``make compat``).
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP INDEX segments_by_stored")
        db.execute("ALTER TABLE segments DROP COLUMN stored")
    store = SqliteEventStore(path, retention=60.0, now=lambda: clock[0])
    try:
        await store.append([trade(2)])
        await store.append([trade(3)])
        clock[0] += 3600
        await store.append([trade(4)])
        assert [s.position for s in await store.read_all(0)] == [1, 4]  # 2-3 expired
    finally:
        await store.close()


async def test_a_full_disk_is_a_store_error_and_loses_nothing_committed(tmp_path: Path) -> None:
    """SQLite's "database or disk is full" (here: a page limit) is a StoreError naming it,
    the failed batch leaves nothing behind, and appends go on once there is room again.
    (SQLite rolls back by itself on a full disk: the store's own ROLLBACK used to fail then,
    hiding the cause behind a raw "cannot rollback - no transaction is active".)"""
    store = SqliteEventStore(tmp_path / "full.db")
    try:
        db = store._db  # the writer's connection
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        db.execute(f"PRAGMA max_page_count = {pages + 4}")
        appended = 0
        failure: StoreError | None = None
        while failure is None and appended < 20_000:
            try:
                await store.append([trade(appended + k + 1) for k in range(20)])
            except StoreError as e:
                failure = e
            else:
                appended += 20
        assert failure is not None
        assert "database or disk is full" in str(failure)
        assert appended > 0  # some batches fitted before the disk was "full"
        assert not db.in_transaction
        stored = await store.read_all(0, limit=10_000)
        assert [s.position for s in stored] == list(range(1, appended + 1))
        db.execute("PRAGMA max_page_count = 1000000")  # room again
        result = await store.append([trade(appended + 1)])
        assert (result.stored[0].position, result.stored[0].event.version) == (
            appended + 1, appended + 1
        )  # fmt: skip
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        await store.close()


def test_sqlite_store_refuses_another_schema_and_keeps_nothing_open(tmp_path: Path) -> None:
    """A file of another store schema is refused by name, and the refused store leaves no
    connection behind (the file can be removed and created again at once)."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 999")
    db.close()
    with pytest.raises(StoreError, match="has store schema 999"):
        SqliteEventStore(path)
    connections = [o for o in gc.get_objects() if type(o) is sqlite3.Connection]
    assert [c for c in connections if _open_on(c) == str(path)] == []
    path.unlink()
    anyio.run(SqliteEventStore(path).close)


def _open_on(connection: sqlite3.Connection) -> str | None:
    """Return the file an open connection reads (``None`` once closed)."""
    try:
        return str(connection.execute("PRAGMA database_list").fetchone()[2])
    except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
        return None


async def test_mixed_kinds_keep_one_order(store: EventStore) -> None:
    """Market and other events interleaved in appends come back in one global order."""
    gap = SequenceGapDetected(
        stream="depth-BTCUSDT", version=0, exchange_ts=3, receive_ts=3, exchange="test",
        symbol="BTCUSDT", reason=GapReason.GAP, expected_update_id=3, received_update_id=5,
    )  # fmt: skip
    await store.append([diff(1, 1), trade(1), gap, diff(5, 6), bar("10", 0)])
    await store.append([trade(2), bar("11", 1), diff(7, 7)])
    everything = await store.read_all(0)
    assert [s.position for s in everything] == list(range(1, 9))
    kinds = [type(s.event).__name__ for s in everything]
    assert kinds == [
        "DepthDiffReceived", "TradeReceived", "SequenceGapDetected", "DepthDiffReceived",
        "BarClosed", "TradeReceived", "BarClosed", "DepthDiffReceived",
    ]  # fmt: skip
    depth = await store.read_stream("depth-BTCUSDT")
    assert [type(e).__name__ for e in depth] == [
        "DepthDiffReceived", "SequenceGapDetected", "DepthDiffReceived", "DepthDiffReceived",
    ]  # fmt: skip
    assert [e.version for e in depth] == [1, 2, 3, 4]
    assert await store.read_stream("depth-BTCUSDT", after_version=2, limit=1) == [depth[2]]
    assert await store.last_event("depth-BTCUSDT") == depth[-1]
    assert [s.position for s in await store.read_all(3, limit=3)] == [4, 5, 6]
    bars = await store.read_all(0, types=(BarClosed,))
    assert [s.position for s in bars] == [5, 7]
    market_after_five = await store.read_all(5, types=(DepthDiffReceived, TradeReceived))
    assert [s.position for s in market_after_five] == [6, 8]


async def test_market_duplicates_by_natural_order(store: EventStore) -> None:
    """A depth diff or trade already stored (same update or trade id) is a duplicate."""
    await store.append([diff(1, 2), diff(3, 4), trade(7)])
    again = await store.append([diff(3, 4), trade(7), diff(5, 5), trade(8)])
    assert again.duplicates == 2
    assert [type(s.event).__name__ for s in again.stored] == [
        "DepthDiffReceived", "TradeReceived",
    ]  # fmt: skip
    assert await store.head() == 5


async def test_the_services_retention_reaches_the_sqlite_store(tmp_path: Path) -> None:
    """`--depth-retention` opens the SQLite store with it; other commands keep all data."""
    kept = open_store(str(tmp_path / "a.db"), depth_retention=7 * 86400.0)
    forever = open_store(str(tmp_path / "b.db"), depth_retention=0.0)
    reader = open_store(str(tmp_path / "a.db"))
    try:
        assert isinstance(kept, SqliteEventStore)
        assert isinstance(forever, SqliteEventStore)
        assert isinstance(reader, SqliteEventStore)
        assert (kept.retention, forever.retention, reader.retention) == (7 * 86400.0, None, None)
    finally:
        for store in (kept, forever, reader):
            await store.close()


@pytest.mark.parametrize(
    ("later", "stored"),
    [
        ((3, 4), False),  # inside what 1..5 covered
        ((5, 5), False),  # its last update id
        ((1, 5), False),  # the same diff again
        ((4, 6), True),  # reaches past it: new updates
        ((6, 8), True),  # the next diff
    ],
)
async def test_a_diff_inside_what_is_stored_is_a_duplicate(
    store: EventStore, later: tuple[int, int], stored: bool
) -> None:
    """After a diff covering update ids 1..5, a diff is stored only when it reaches past 5;
    every store follows the one rule (domain.appending)."""
    await store.append([diff(1, 5)])
    result = await store.append([diff(*later)])
    assert (result.duplicates, len(result.stored)) == ((0, 1) if stored else (1, 0))
    assert [e.version for e in await store.read_stream("depth-BTCUSDT")] == (
        [1, 2] if stored else [1]
    )


async def test_snapshots_trades_and_ids_follow_the_same_rule(store: EventStore) -> None:
    """A snapshot at or below the stored update id, a trade id at or below the last, and an
    event whose id is stored (or repeated in the batch) are duplicates; the rest is stored."""
    await store.append([diff(1, 5), trade(7), bar("10", 0)])
    result = await store.append(
        [snapshot(5), snapshot(9), trade(6), trade(7), trade(9), bar("10", 0), bar("11", 1),
         bar("11", 1)]
    )  # fmt: skip
    assert result.duplicates == 5
    assert [type(s.event).__name__ for s in result.stored] == [
        "BookSnapshotTaken", "TradeReceived", "BarClosed",
    ]  # fmt: skip
    assert [s.position for s in result.stored] == [4, 5, 6]


async def test_a_conflict_anywhere_in_a_batch_stores_none_of_it(store: EventStore) -> None:
    """A batch whose last event names a taken version stores nothing, its new market
    events included, and the stream takes them afterwards."""
    await store.append([diff(1, 5), trade(1)])
    with pytest.raises(ConcurrencyError):
        await store.append([diff(6, 7), trade(2), with_version(trade(3), 1)])
    assert await store.head() == 2
    again = await store.append([diff(6, 7), trade(2)])
    assert (again.duplicates, len(again.stored)) == (0, 2)
