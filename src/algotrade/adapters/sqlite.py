"""The embedded event store: one SQLite file in WAL mode, durable across restarts.

It is the default store, so ``algotrade run`` needs no server. Several processes may share
one file: SQLite serialises writers (``BEGIN IMMEDIATE``) and WAL lets readers follow while
a writer appends. A writer that finds the lock taken waits for it without blocking its event
loop, trying again every 0.2 ms to 2 ms (SQLite's own busy handler sleeps the thread 1, 2,
5, 10, ... 100 ms: with three services writing one file, that sleep was most of the
pipeline's p99), for ``lock_timeout`` seconds at most. Writes use one connection, reads a
second one that sees only committed data.

Two tables share one position space:

* ``segments`` hold market data (depth diffs, snapshots, trades): each append's run of
  consecutive market events is one row, a JSON array of ``[stream, version, type, doc]``.
  Market data is most of the log and is read in position order, so a row per event (and
  two index entries per event) would be wasted work: measured, segments cut the store's
  cost per market event from about 11 us to about 3 us on the development machine.
* ``events`` hold everything else, one row each, indexed by id, by stream and version,
  and by type.

``streams`` records each stream's last version, position, natural sequence and last event,
so version checks and ``last_event`` never scan. Market streams are ordered by their
natural sequence (the update id of depth events, the trade id of trades): appending a market
event at or below its stream's last sequence is a duplicate, which is what its id says.

With a ``retention`` (the collector's ``--depth-retention``), market data is deleted once it
has been stored that long: about once a minute an append also deletes up to 10,000 expired
segments, oldest first, in a transaction of its own. Everything else is kept, and so is the
newest segment (it holds the highest position: positions are never given out twice).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import orjson

from algotrade.adapters import codec
from algotrade.adapters.polling import wait_for_head
from algotrade.domain.appending import SEQUENCE, plan_append
from algotrade.domain.errors import StoreError
from algotrade.domain.events import (
    Event,
)
from algotrade.domain.ports import AppendResult, StoredEvent, Tracking

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    first    INTEGER PRIMARY KEY,
    last     INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    stored   INTEGER  -- Unix seconds of the append (NULL: written before retention, kept)
);
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    id       TEXT    NOT NULL UNIQUE,
    stream   TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    data     BLOB    NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, position);
CREATE TABLE IF NOT EXISTS streams (
    stream    TEXT    PRIMARY KEY,
    version   INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    sequence  INTEGER,
    last_type TEXT    NOT NULL,
    last_data BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS tracking (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
);
"""
_FIRST_RETRY = 0.0002  # seconds: a writer's first wait for another's lock, doubling to
_LAST_RETRY = 0.002  # this (a commit of a collector's batch takes about 1 to 5 ms)
_CHUNK = 500  # ids per "IN (...)" query, well below SQLite's variable limit
PRUNE_EVERY = 60.0  # seconds between two deletions of expired market data
PRUNE_BATCH = 10_000  # segments a deletion removes at most (the write lock stays short)


SEGMENTED = frozenset(cls.__name__ for cls in SEQUENCE)


@dataclass(slots=True)
class _Stream:
    version: int
    sequence: int | None
    position: int = 0
    last: tuple[str, dict[str, Any]] | None = None
    touched: bool = False


class SqliteEventStore:
    """An :class:`~algotrade.domain.ports.EventStore` on one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        poll_interval: float = 0.002,
        lock_timeout: float = 30.0,
        retention: float | None = None,
        now: Callable[[], float] = time.time,
        on_problem: Callable[[str, str], None] | None = None,
    ) -> None:
        self.path = str(path)
        self.poll_interval = poll_interval
        self.lock_timeout = lock_timeout
        self.lock_waits = 0
        """Write transactions that found another writer holding the lock and waited."""
        self.retention = retention or None  # seconds; None or 0: market data kept for ever
        self._now = now
        self.on_problem = on_problem
        """Told ``(what, detail)`` of a failure the store survives (a deletion that failed)."""
        self._pruned_at = float("-inf")
        self.expired_events = 0
        """Market events deleted by the retention since the store was opened."""
        if self.path == ":memory:":
            raise StoreError("the SQLite store needs a file; use the in-memory store instead")
        opened: list[sqlite3.Connection] = []
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            opened.append(self._db)
            (found,) = self._db.execute("PRAGMA user_version").fetchone()
            if found not in (0, SCHEMA_VERSION):
                raise StoreError(
                    f"{self.path!r} has store schema {found}; this version reads {SCHEMA_VERSION}"
                )
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(segments)")}
            if "stored" not in columns:  # a store written before retention
                self._db.execute("ALTER TABLE segments ADD COLUMN stored INTEGER")
            self._db.execute("CREATE INDEX IF NOT EXISTS segments_by_stored ON segments (stored)")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("PRAGMA busy_timeout=0")  # writes wait in _begin, not in SQLite
            self._reader = self._connect()
        except BaseException as e:
            for db in opened:  # a store that failed to open leaves no connection behind
                db.close()
            if isinstance(e, sqlite3.Error | OSError):
                raise StoreError(f"cannot open SQLite store {self.path!r}: {e}") from e
            raise

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turn a SQLite error inside the block into a :class:`StoreError` saying what
        failed where (``write failed on 'algotrade.db': database or disk is full``): the
        SQLite adapter's one mapping of driver errors (an integrity error names the write
        the store refused)."""
        try:
            yield
        except sqlite3.IntegrityError as e:
            raise StoreError(f"the store {self.path!r} refused a write: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"{what} {self.path!r}: {e}") from e

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
        db.execute("PRAGMA cache_size=-16384")  # 16 MiB a connection: bounded memory, and the
        # segments keep the indexes small (64 MiB measured no faster)
        return db

    # --- writing ---------------------------------------------------------------------------

    async def append(
        self, events: Sequence[Event], *, tracking: Tracking | None = None
    ) -> AppendResult:
        """Store ``events`` and ``tracking`` in one transaction; see the port for the rules."""
        if not events and tracking is None:
            return AppendResult((), 0)
        db = self._db
        await self._begin()
        try:
            with self._translated("write failed on"):
                result = self._append_locked(events, tracking)
            with self._translated("commit failed on"):
                db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        if self.retention is not None:
            await self._expire()
        return result

    async def _begin(self) -> None:
        """Start a write transaction, waiting for another writer's lock without blocking."""
        db = self._db
        delay, waited = _FIRST_RETRY, 0.0
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if not _locked(e) or waited >= self.lock_timeout:
                    with self._translated("cannot start a write on"):
                        raise
            if waited == 0.0:
                self.lock_waits += 1
            await anyio.sleep(delay)
            waited += delay
            delay = min(delay * 2, _LAST_RETRY)

    async def _expire(self) -> None:
        """Delete market data stored longer than the retention (at most once a minute)."""
        assert self.retention is not None
        now = self._now()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        db = self._db
        try:
            await self._begin()
            deleted = db.execute(
                "DELETE FROM segments WHERE first IN (SELECT first FROM segments"
                " WHERE stored < ? AND first < (SELECT MAX(first) FROM segments)"
                " ORDER BY stored LIMIT ?) RETURNING last - first + 1",
                (int(now - self.retention), PRUNE_BATCH),
            ).fetchall()
            db.execute("COMMIT")
        except (sqlite3.Error, StoreError) as e:
            _rollback(db)  # what was appended is committed; the next minute tries again
            if self.on_problem is not None:
                self.on_problem("expired market data not deleted, retrying in a minute", str(e))
            return
        self.expired_events += sum(n for (n,) in deleted)

    def _append_locked(self, events: Sequence[Event], tracking: Tracking | None) -> AppendResult:
        db = self._db
        existing = self._existing_ids([e.id for e in events if type(e).__name__ not in SEGMENTED])
        head = self._head(db)
        streams: dict[str, _Stream] = {}
        segments: list[tuple[int, int, bytes]] = []
        run: list[list[Any]] = []
        rows: list[tuple[int, str, str, int, str, bytes]] = []
        stored: list[StoredEvent] = []
        to_doc = codec.to_dict

        def cursor(name: str) -> _Stream:
            return streams.get(name) or self._stream_state(name, streams)

        plan = plan_append(events, cursor, existing)  # raises before anything is written
        for event in plan.events:
            type_ = type(event).__name__
            name = event.stream
            state = streams[name]
            segmented = type_ in SEGMENTED
            head += 1
            doc = to_doc(event)
            if segmented:
                run.append([name, event.version, type_, doc])
            else:
                if run:
                    segments.append(self._segment(head - 1, run))
                    run = []
                rows.append((head, event.id, name, event.version, type_, orjson.dumps(doc)))
            state.position = head
            state.last = (type_, doc)
            state.touched = True
            stored.append(StoredEvent(head, event))
        if run:
            segments.append(self._segment(head, run))
        db.executemany(
            "INSERT INTO segments (first, last, data, stored) VALUES (?, ?, ?, ?)",
            [(*segment, int(self._now())) for segment in segments],
        )
        db.executemany(
            "INSERT INTO events (position, id, stream, version, type, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        self._save_streams(streams)
        if tracking is not None:
            db.execute(
                "INSERT INTO tracking (name, position) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (tracking.name, tracking.position),
            )
        return AppendResult(tuple(stored), plan.duplicates)

    @staticmethod
    def _segment(last: int, run: list[list[Any]]) -> tuple[int, int, bytes]:
        return (last - len(run) + 1, last, orjson.dumps(run))

    def _existing_ids(self, ids: list[str]) -> set[str]:
        existing: set[str] = set()
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT id FROM events WHERE id IN ({marks})"
            existing.update(r[0] for r in self._db.execute(query, chunk))
        return existing

    def _stream_state(self, name: str, streams: dict[str, _Stream]) -> _Stream:
        row = self._db.execute(
            "SELECT version, sequence FROM streams WHERE stream = ?", (name,)
        ).fetchone()
        state = _Stream(0, None) if row is None else _Stream(int(row[0]), row[1])
        streams[name] = state
        return state

    def _save_streams(self, streams: dict[str, _Stream]) -> None:
        updates = []
        for name, state in streams.items():
            if state.touched and state.last is not None:
                type_, doc = state.last
                updates.append(
                    (name, state.version, state.position, state.sequence, type_, orjson.dumps(doc))
                )
        self._db.executemany(
            "INSERT INTO streams (stream, version, position, sequence, last_type, last_data)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (stream) DO UPDATE SET"
            " version = excluded.version, position = excluded.position,"
            " sequence = excluded.sequence, last_type = excluded.last_type,"
            " last_data = excluded.last_data",
            updates,
        )

    # --- reading ---------------------------------------------------------------------------

    @staticmethod
    def _head(db: sqlite3.Connection) -> int:
        (rows,) = db.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
        # The last segment by its key: MAX(last) read every segment (no index on last), so
        # each append slowed down as the store grew (8.7 ms at 100,000 segments).
        newest = db.execute("SELECT last FROM segments ORDER BY first DESC LIMIT 1").fetchone()
        segs = 0 if newest is None else newest[0]
        return max(int(rows), int(segs))

    def _segment_entries(
        self, after: int, names: frozenset[str] | None
    ) -> Iterator[tuple[int, str, int, str, dict[str, Any]]]:
        """Yield (position, stream, version, type, doc) of market events after ``after``."""
        # Segments never overlap: start at the one holding position after + 1.
        cursor = self._reader.execute(
            "SELECT first, data FROM segments WHERE first >="
            " (SELECT COALESCE(MAX(first), 0) FROM segments WHERE first <= ?) ORDER BY first",
            (after + 1,),
        )
        for first, data in cursor:
            for offset, (stream, version, type_, doc) in enumerate(orjson.loads(data)):
                position = first + offset
                if position > after and (names is None or type_ in names):
                    yield position, stream, version, type_, doc

    async def read_all(
        self,
        after: int = 0,
        *,
        limit: int = 1000,
        types: tuple[type[Event], ...] | None = None,
        levels: bool = True,
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events after position ``after``, in order (depth diffs
        without their levels when ``levels`` is false)."""
        names = None if types is None else frozenset(codec.type_name(t) for t in types)
        with codec.gc_paused(), self._translated("cannot read"):
            return self._read_all(after, limit, names, levels)

    def _read_all(
        self, after: int, limit: int, names: frozenset[str] | None, levels: bool
    ) -> list[StoredEvent]:
        found: list[tuple[int, str, int, str, Any]] = []
        if names is None or not names <= SEGMENTED:
            query = "SELECT position, stream, version, type, data FROM events WHERE position > ?"
            args: list[Any] = [after]
            if names is not None:
                query += f" AND type IN ({','.join('?' * len(names))})"
                args.extend(sorted(names))
            rows = self._reader.execute(query + " ORDER BY position LIMIT ?", (*args, limit))
            found.extend((p, s, v, t, orjson.loads(d)) for p, s, v, t, d in rows)
        if names is None or names & SEGMENTED:
            for n, entry in enumerate(self._segment_entries(after, names)):
                if n >= limit:
                    break
                found.append(entry)
            found.sort(key=lambda entry: entry[0])
        decode = codec.from_dict
        return [
            StoredEvent(p, decode(t, s, v, doc, levels=levels)) for p, s, v, t, doc in found[:limit]
        ]

    async def read_stream(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Return a stream's events after ``after_version``, in version order.

        Market streams are found by scanning the segments: meant for tools and tests, not
        for a hot path.
        """
        with self._translated("cannot read"):
            return self._read_stream(stream, after_version, limit)

    def _read_stream(self, stream: str, after_version: int, limit: int | None) -> list[Event]:
        row = self._reader.execute(
            "SELECT sequence FROM streams WHERE stream = ?", (stream,)
        ).fetchone()
        if row is None:
            return []
        found = [
            (v, t, orjson.loads(d))
            for v, t, d in self._reader.execute(
                "SELECT version, type, data FROM events"
                " WHERE stream = ? AND version > ? ORDER BY version",
                (stream, after_version),
            )
        ]
        if row[0] is not None:  # a market stream: its market events are in the segments
            found.extend(
                (v, t, doc)
                for _, s, v, t, doc in self._segment_entries(0, None)
                if s == stream and v > after_version
            )
            found.sort(key=lambda entry: entry[0])
        if limit is not None:
            found = found[:limit]
        return [codec.from_dict(t, stream, v, doc) for v, t, doc in found]

    async def last_event(self, stream: str) -> Event | None:
        """Return the stream's latest event (kept beside the stream's version: no scan)."""
        with self._translated("cannot read"):
            row = self._reader.execute(
                "SELECT version, last_type, last_data FROM streams WHERE stream = ?", (stream,)
            ).fetchone()
        if row is None:
            return None
        version, type_, data = row
        return codec.decode(type_, stream, version, data)

    async def head(self) -> int:
        """Return the highest position."""
        with self._translated("cannot read"):
            return self._head(self._reader)

    async def wait(self, after: int, timeout: float) -> bool:
        """Poll, every ``poll_interval`` seconds, for an event above ``after``."""
        return await wait_for_head(self.head, after, timeout, self.poll_interval)

    async def tracking_position(self, name: str) -> int:
        """Return a consumer's recorded position."""
        with self._translated("cannot read"):
            row = self._reader.execute(
                "SELECT position FROM tracking WHERE name = ?", (name,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    async def ping(self) -> None:
        """Read the database file once."""
        with self._translated("cannot read"):
            self._reader.execute("SELECT 1 FROM streams LIMIT 1").fetchall()

    async def close(self) -> None:
        """Close the database file."""
        self._reader.close()
        self._db.close()


def _locked(error: sqlite3.OperationalError) -> bool:
    """Whether ``error`` says another connection holds the lock (try again), not a failure."""
    code = getattr(error, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(error)


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already: it does by itself on some
    errors (a full disk: SQLITE_FULL), and a ROLLBACK then would fail and hide the error
    that matters."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
