"""The embedded event store: one SQLite file in WAL mode, durable across restarts.

It is the default store, so ``algotrade run`` needs no server. Several processes may share
one file: SQLite serialises writers (``BEGIN IMMEDIATE`` with a busy timeout) and WAL lets
readers follow while a writer appends.

Writes use one connection, reads a second one that sees only committed data. Writes run
on the event loop's thread: measured, a worker thread made ingest slower, because encoding
and bookkeeping hold the GIL anyway (see docs/benchmarks.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import anyio

from algotrade.adapters import codec
from algotrade.domain.errors import ConcurrencyError, StoreError
from algotrade.domain.events import Event, with_version
from algotrade.domain.ports import AppendResult, StoredEvent, Tracking

# Market data is most of the log, arrives in order and is read by position, so its rows
# carry only the two indexes every row needs (position, id); the rarer event types are also
# indexed by stream and by type. Each stream's last version and position live in `streams`,
# which the single writer checks and updates once per stream and batch.
_MARKET_TYPES = frozenset(
    {"DepthDiffReceived", "BookSnapshotTaken", "TradeReceived", "SequenceGapDetected"}
)
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    id       TEXT    NOT NULL UNIQUE,
    stream   TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    market   INTEGER NOT NULL,
    data     BLOB    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_stream ON events (stream, version)
    WHERE market = 0;
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, position) WHERE market = 0;
CREATE TABLE IF NOT EXISTS streams (
    stream   TEXT    PRIMARY KEY,
    version  INTEGER NOT NULL,
    position INTEGER NOT NULL,
    market   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tracking (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
);
"""

_CHUNK = 500  # ids per "IN (...)" query, well below SQLite's variable limit


class _DuplicatesFoundError(Exception):
    """The fast path met an already stored id (or a conflict that may be one)."""


class SqliteEventStore:
    """An :class:`~algotrade.domain.ports.EventStore` on one SQLite file."""

    def __init__(self, path: str | Path, *, poll_interval: float = 0.05) -> None:
        self.path = str(path)
        self.poll_interval = poll_interval
        if self.path == ":memory:":
            raise StoreError("the SQLite store needs a file; use the in-memory store instead")
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            (found,) = self._db.execute("PRAGMA user_version").fetchone()
            if found not in (0, SCHEMA_VERSION):
                raise StoreError(
                    f"{self.path!r} has store schema {found}; this version reads {SCHEMA_VERSION}"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._reader = self._connect()
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open SQLite store {self.path!r}: {e}") from e

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
        db.execute("PRAGMA cache_size=-65536")  # 64 MiB: the hot index pages stay in memory
        return db

    async def append(
        self, events: Sequence[Event], *, tracking: Tracking | None = None
    ) -> AppendResult:
        """Store ``events`` and ``tracking`` in one transaction; see the port for the rules."""
        if not events and tracking is None:
            return AppendResult((), 0)
        encoded = [(e, e.id, type(e).__name__, codec.encode(e)) for e in events]
        return self._append_sync(encoded, tracking)

    def _append_sync(
        self, encoded: list[tuple[Event, str, str, bytes]], tracking: Tracking | None
    ) -> AppendResult:
        try:
            # Fast path: no duplicate is expected, so nothing is looked up first; if the
            # insert skipped any id, roll back and redo the batch checking every id.
            return self._transaction(encoded, tracking, check_ids=False)
        except _DuplicatesFoundError:
            return self._transaction(encoded, tracking, check_ids=True)

    def _transaction(
        self,
        encoded: list[tuple[Event, str, str, bytes]],
        tracking: Tracking | None,
        *,
        check_ids: bool,
    ) -> AppendResult:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"cannot start a write on {self.path!r}: {e}") from e
        try:
            result = self._append_locked(encoded, tracking, check_ids=check_ids)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as e:
            raise StoreError(f"commit failed on {self.path!r}: {e}") from e
        return result

    def _append_locked(
        self,
        encoded: list[tuple[Event, str, str, bytes]],
        tracking: Tracking | None,
        *,
        check_ids: bool,
    ) -> AppendResult:
        db = self._db
        existing: set[str] = set()
        if check_ids:
            ids = [eid for _, eid, _, _ in encoded]
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                existing.update(
                    r[0] for r in db.execute(f"SELECT id FROM events WHERE id IN ({marks})", chunk)
                )
        (head,) = db.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
        versions: dict[str, int] = {}
        last_position: dict[str, int] = {}
        markets: dict[str, bool] = {}
        rows = []
        stored = []
        duplicates = 0
        market = _MARKET_TYPES
        for event, eid, type_, data in encoded:
            if eid in existing:
                duplicates += 1
                continue
            existing.add(eid)
            stream = event.stream
            current = versions.get(stream)
            if current is None:
                current = self._stream_version(stream)
            if event.version == 0:
                event = with_version(event, current + 1)
            elif event.version != current + 1:
                if not check_ids:
                    raise _DuplicatesFoundError  # maybe a re-append: decide on the slow path
                raise ConcurrencyError(stream, event.version)
            versions[stream] = event.version
            markets[stream] = type_ in market
            head += 1
            last_position[stream] = head
            rows.append((head, eid, stream, event.version, type_, type_ in market, data))
            stored.append(StoredEvent(head, event))
        before = db.total_changes
        try:
            db.executemany(
                "INSERT INTO events (position, id, stream, version, type, market, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                rows,
            )
        except sqlite3.IntegrityError as e:
            if not check_ids:
                raise _DuplicatesFoundError from e
            raise self._conflict(rows) from e
        if db.total_changes - before != len(rows):
            raise _DuplicatesFoundError
        db.executemany(
            "INSERT INTO streams (stream, version, position, market) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (stream) DO UPDATE"
            " SET version = excluded.version, position = excluded.position",
            [
                (stream, version, last_position[stream], markets[stream])
                for stream, version in versions.items()
            ],
        )
        if tracking is not None:
            db.execute(
                "INSERT INTO tracking (name, position) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (tracking.name, tracking.position),
            )
        return AppendResult(tuple(stored), duplicates)

    def _stream_version(self, stream: str) -> int:
        row = self._db.execute("SELECT version FROM streams WHERE stream = ?", (stream,)).fetchone()
        return 0 if row is None else int(row[0])

    def _conflict(
        self, rows: list[tuple[int, str, str, int, str, bool, bytes]]
    ) -> ConcurrencyError:
        for _, eid, stream, version, _, _, _ in rows:
            hit = self._db.execute(
                "SELECT id FROM events WHERE stream = ? AND version = ?", (stream, version)
            ).fetchone()
            if hit is not None and hit[0] != eid:
                return ConcurrencyError(stream, version)
        first = rows[0]
        return ConcurrencyError(first[2], first[3])

    async def read_stream(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Return a stream's events after ``after_version``, in version order."""
        found = self._reader.execute(
            "SELECT market FROM streams WHERE stream = ?", (stream,)
        ).fetchone()
        if found is None:
            return []
        # Non-market streams use their index; a market stream is scanned in position order
        # (its versions grow with position), which only offline tools need.
        order = "position" if found[0] else "version"
        rows = self._reader.execute(
            "SELECT stream, version, type, data FROM events"
            f" WHERE stream = ? AND market = ? AND version > ? ORDER BY {order} LIMIT ?",
            (stream, found[0], after_version, -1 if limit is None else limit),
        ).fetchall()
        return [codec.decode(t, s, v, d) for s, v, t, d in rows]

    async def last_event(self, stream: str) -> Event | None:
        """Return the stream's latest event."""
        row = self._reader.execute(
            "SELECT e.stream, e.version, e.type, e.data FROM streams AS s"
            " JOIN events AS e ON e.position = s.position WHERE s.stream = ?",
            (stream,),
        ).fetchone()
        if row is None:
            return None
        s, v, t, d = row
        return codec.decode(t, s, v, d)

    async def read_all(
        self,
        after: int = 0,
        *,
        limit: int = 1000,
        types: tuple[type[Event], ...] | None = None,
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events after position ``after``, in order."""
        if types is None:
            rows = self._reader.execute(
                "SELECT position, stream, version, type, data FROM events"
                " WHERE position > ? ORDER BY position LIMIT ?",
                (after, limit),
            ).fetchall()
        else:
            names = [codec.type_name(t) for t in types]
            marks = ",".join("?" * len(names))
            # Only non-market types are indexed by type (the partial index needs market = 0).
            indexed = " AND market = 0" if _MARKET_TYPES.isdisjoint(names) else ""
            rows = self._reader.execute(
                "SELECT position, stream, version, type, data FROM events"
                f" WHERE type IN ({marks}){indexed} AND position > ?"
                " ORDER BY position LIMIT ?",
                (*names, after, limit),
            ).fetchall()
        return [StoredEvent(p, codec.decode(t, s, v, d)) for p, s, v, t, d in rows]

    async def head(self) -> int:
        """Return the highest position."""
        (head,) = self._reader.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
        return int(head)

    async def wait(self, after: int, timeout: float) -> bool:
        """Poll, every ``poll_interval`` seconds, for an event above ``after``."""
        with anyio.move_on_after(timeout):
            while await self.head() <= after:
                await anyio.sleep(self.poll_interval)
            return True
        return False

    async def tracking_position(self, name: str) -> int:
        """Return a consumer's recorded position."""
        row = self._reader.execute(
            "SELECT position FROM tracking WHERE name = ?", (name,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    async def close(self) -> None:
        """Close the database file."""
        self._reader.close()
        self._db.close()
