"""The MongoDB event store: the seed's collections, idempotent, batched, safe for many writers.

MongoDB has no multi-document transaction on a standalone server, and several processes
append at once (two collectors, a processor, a trader). Three things keep the log exact:

* **Natural ids.** Every document's ``_id`` is its event's id (symbol and final update id for
  a depth diff, the signal id for a signal, ...). Writing the same event twice, by a retry or by
  a second collector, stores it once and counts a duplicate. A unique index on
  ``(stream, version)`` makes a *different* event at an occupied version a
  :class:`~algotrade.domain.errors.ConcurrencyError`.
* **Ranges of positions, with a commit record.** An append takes a range of global positions
  from a counter (one ``$inc``), records the range as ``pending`` in ``commits``, inserts its
  documents (``insert_many``, unordered) and then flips the range to ``committed``. Readers
  return only positions up to the highest contiguous resolved range, so a slow writer's range
  is never skipped by a reader who already saw a later one, and a failed append's documents are
  never seen: the writer flips its range to ``aborted``, deletes what it wrote and retries in a
  new range. A writer that died holding a range is declared dead by the first reader that waits
  ``gap_timeout`` seconds on it (the flip is atomic: whoever changes ``pending`` first wins, and
  a writer whose range was aborted under it retries). Positions are therefore increasing but not
  gapless: duplicates and aborted ranges leave holes. Committed records behind the resolved
  checkpoint (``counters.resolved``) are deleted; aborted ones are kept.
* **Retries.** Connection errors and timeouts are retried with capped exponential backoff and
  jitter, for ever by default (``give_up_after`` bounds it), each attempt reported through
  ``on_retry``. An append in flight when MongoDB goes away is rolled back and re-done once it
  returns: its events are stored once, none lost, none doubled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import time
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import pymongo
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, uri_parser
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    InvalidURI,
    OperationFailure,
    PyMongoError,
)
from pymongo.errors import ConfigurationError as MongoConfigurationError

from algotrade.adapters import codec
from algotrade.adapters.mongo import documents
from algotrade.adapters.polling import wait_for_head
from algotrade.domain.appending import SEQUENCE_FIELD, plan_append
from algotrade.domain.errors import (
    ConcurrencyError,
    ConfigurationError,
    InvalidInputError,
    StoreError,
)
from algotrade.domain.events import (
    Event,
)
from algotrade.domain.ports import AppendResult, StoredEvent, Tracking

T = TypeVar("T")
Doc = dict[str, Any]
OnRetry = Callable[[str, str, float], None]
OnProblem = Callable[[str, str], None]

DEFAULT_DATABASE = "btc_data"
DEFAULT_RETENTION = 7 * 86400.0
#: Collections whose documents expire after the retention period (market data).
RETAINED = ("depth", "trades")
SEQUENCE = SEQUENCE_FIELD  # the natural order's field, by market event class
_SEQUENCE_FIELD = {"depth": "final_update_id", "trades": "trade_id"}
_MARKET_TYPES = [cls.__name__ for cls in SEQUENCE]
#: Server error codes that mean "try again" (primary stepped down, shutting down, timeouts).
_RETRYABLE_CODES = frozenset({6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
_PAGE = 500
_PRUNE = 10_000  # committed records deleted at most per checkpoint
_NO_END = 2**63  # above any position: (position, _NO_END) sorts after every range at it


class _RetryError(Exception):
    """The append met another writer's work (or a stale cache) and must be planned again."""


def _transient(error: PyMongoError) -> bool:
    if isinstance(error, ConnectionFailure):  # also AutoReconnect, timeouts, no server
        return True
    if isinstance(error, OperationFailure) and error.code in _RETRYABLE_CODES:
        return True
    return error.has_error_label("RetryableWriteError")


@dataclass(slots=True)
class _Stream:
    version: int
    sequence: int | None
    fresh: bool  # read from the database in this attempt, not from the cache


@dataclass(slots=True)
class _Range:
    first: int
    last: int
    collections: set[str] = field(default_factory=set)
    allocated: float = 0.0


@dataclass(slots=True)
class MongoStats:
    """What the store did, for metrics and tests."""

    retries: int = 0
    duplicates: int = 0
    conflicts_retried: int = 0
    ranges_aborted: int = 0
    ranges_declared_dead: int = 0
    commits_pruned: int = 0
    malformed: int = 0


async def _backfill_stored_at(coll: AsyncCollection[Doc], batch: int = 10_000) -> None:
    """Give every document without ``stored_at`` the present time, ``batch`` at a time (each
    update stays well inside the socket timeout, however large the collection)."""
    now = dt.datetime.now(dt.UTC)
    while True:
        missing = coll.find({"stored_at": {"$exists": False}}, {"_id": 1}).limit(batch)
        ids = [doc["_id"] async for doc in missing]
        if not ids:
            return
        await coll.update_many({"_id": {"$in": ids}}, {"$set": {"stored_at": now}})


def database_name(url: str) -> str:
    """Return the database named in a MongoDB URL, or ``btc_data``."""
    try:
        parsed = uri_parser.parse_uri(url, validate=False)
    except (InvalidURI, MongoConfigurationError, ValueError) as e:
        raise ConfigurationError("store", f"not a valid MongoDB URL: {e}") from None
    return str(parsed.get("database") or DEFAULT_DATABASE)


class MongoEventStore:
    """An :class:`~algotrade.domain.ports.EventStore` on MongoDB (pymongo's async client).

    ``url`` is a ``mongodb://`` URL; its path names the database (``btc_data`` by default).
    ``depth_retention`` seconds (0: for ever) sets the TTL index of the market collections
    (on ``stored_at``, the time of the append: retention counts from storing, as in SQLite);
    ``None`` leaves it as it is (only the collector manages it, so that a processor started
    with other settings never changes it).
    """

    def __init__(
        self,
        url: str,
        *,
        database: str | None = None,
        depth_retention: float | None = DEFAULT_RETENTION,
        poll_interval: float = 0.05,
        gap_timeout: float = 10.0,
        commit_deadline: float = 5.0,
        retry_max_delay: float = 2.0,
        give_up_after: float | None = None,
        server_timeout: float = 2.0,
        socket_timeout: float = 20.0,
        checkpoint_every: int = 10_000,
        on_retry: OnRetry | None = None,
        on_problem: OnProblem | None = None,
    ) -> None:
        if depth_retention is not None and depth_retention < 0:
            raise ConfigurationError("depth_retention", f"must be 0 or more, got {depth_retention}")
        name = database or database_name(url)
        try:
            self._client: AsyncMongoClient[Doc] = AsyncMongoClient(
                url,
                serverSelectionTimeoutMS=int(server_timeout * 1000),
                connectTimeoutMS=int(server_timeout * 1000),
                # No answer on an open connection for this long is a network error (retried),
                # never a wait without end. (A silent server is caught by pymongo's monitor
                # already; this also bounds one operation a server leaves unanswered while
                # it still answers the monitor's heartbeats.)
                socketTimeoutMS=int(socket_timeout * 1000),
                tz_aware=True,
            )
        except (InvalidURI, MongoConfigurationError, ValueError, TypeError) as e:
            raise ConfigurationError("store", f"not a valid MongoDB URL: {e}") from None
        self.database_name = name
        self._db: AsyncDatabase[Doc] = self._client[name]
        self.depth_retention = depth_retention
        self.server_timeout = server_timeout
        self.poll_interval = poll_interval
        self.gap_timeout = gap_timeout
        self.commit_deadline = commit_deadline
        self.checkpoint_every = checkpoint_every
        self.retry_max_delay = retry_max_delay
        self.give_up_after = give_up_after
        self.on_retry = on_retry
        self.on_problem = on_problem
        self.stats = MongoStats()
        self._ready = False
        self._ready_lock = anyio.Lock()
        self._write_lock = anyio.Lock()
        self._streams: dict[str, tuple[int, int | None]] = {}
        self._open: _Range | None = None
        self._mark = 0
        self._checkpointed = 0
        self._aborted: list[tuple[int, int]] = []
        self._hole: tuple[int, float] | None = None

    # --- plumbing --------------------------------------------------------------------------

    def _coll(self, name: str) -> AsyncCollection[Doc]:
        return self._db[name]

    async def _retrying(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` until it succeeds, pausing (with jitter) between transient failures.

        Each attempt is shielded from cancellation: a caller's timeout or a shutdown takes
        effect once the attempt ends (pymongo bounds it: server selection, socket timeout)
        or in the pause. Cancelled inside server selection, pymongo's asyncio driver can
        lose its topology lock under Python 3.11 (``RuntimeError: cannot wait on
        un-acquired lock`` in every task selecting a server afterwards, which ended a
        processor when MongoDB restarted while its reads waited with a timeout).
        """
        delay = 0.05
        started = time.monotonic()
        while True:
            try:
                with anyio.CancelScope(shield=True):
                    return await op()
            except PyMongoError as e:
                if not _transient(e):
                    raise StoreError(f"MongoDB {what} failed: {e}") from e
                waited = time.monotonic() - started
                if self.give_up_after is not None and waited >= self.give_up_after:
                    raise StoreError(
                        f"MongoDB unreachable for {waited:.0f}s during {what}: {e}"
                    ) from e
                self.stats.retries += 1
                pause = delay * (0.5 + random.random() / 2)  # jitter: writers do not stampede
                delay = min(self.retry_max_delay, delay * 2)
                if self.on_retry is not None:
                    self.on_retry(what, str(e), pause)
                await anyio.sleep(pause)

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await self._retrying("start-up", self._create_indexes)
                self._ready = True

    async def _create_indexes(self) -> None:
        """Create every index (idempotent) and load the readers' starting point."""
        for name in documents.ALL_COLLECTIONS:
            coll = self._coll(name)
            await coll.create_index([("position", ASCENDING)], unique=True, name="position")
            await coll.create_index(
                [("stream", ASCENDING), ("version", ASCENDING)], unique=True, name="stream_version"
            )
        if await self._is_stand_in():
            # nx-27017 plans "a stream's highest versions" (the compound index's own query)
            # as a scan of the collection, so each costs more as the data grows (40 ms at
            # 9,000 documents); with an index on the stream alone it stays at about 1 ms.
            # A real mongod serves it from stream_version: no extra index to maintain.
            for name in documents.ALL_COLLECTIONS:
                await self._coll(name).create_index([("stream", ASCENDING)], name="stream")
        await self._coll("orders").create_index([("order_id", ASCENDING)], name="order_id")
        await self._coll("trade_signals").create_index(
            [("symbol", ASCENDING), ("bar_time", ASCENDING)], name="symbol_bar_time"
        )
        await self._coll("commits").create_index([("state", ASCENDING)], name="state")
        if self.depth_retention is not None:
            for name in RETAINED:
                await self._sync_ttl(self._coll(name), self.depth_retention)
        self._mark = self._checkpointed = await self._checkpoint()
        aborted = self._coll("commits").find({"state": "aborted"}, {"last": 1})
        self._aborted = sorted([(int(d["_id"]), int(d["last"])) async for d in aborted])

    async def _is_stand_in(self) -> bool:
        """Return whether the server is the nx-27017 stand-in (its ``buildInfo`` says so)."""
        try:
            info = await self._client.admin.command("buildInfo")
        except OperationFailure:  # a server that does not say: not the stand-in
            return False
        return bool(info.get("process") == "nx_27017")

    @staticmethod
    async def _sync_ttl(coll: AsyncCollection[Doc], retention: float) -> None:
        """Make the TTL index on ``stored_at`` match the retention (none for 0).

        Retention counts from the storing time, as in the SQLite store: a replayed recording
        is kept, however old its receive times. Stores written before that had their TTL
        index on ``received_at`` and documents without ``stored_at``: the old index is
        dropped and those documents count as stored now (the TTL monitor ignores a document
        without the field, which would be kept for ever).
        """
        want = int(retention) or None
        existing = old = None
        async for index in await coll.list_indexes():
            key = dict(index["key"])
            if key == {"received_at": 1} and "expireAfterSeconds" in index:
                old = index  # the receive-time TTL of older versions
            elif key == {"stored_at": 1}:
                existing = index
        if existing is not None and existing.get("expireAfterSeconds") != want:
            await coll.drop_index(existing["name"])
            existing = None
        if want is not None and existing is None:
            await coll.create_index(
                [("stored_at", ASCENDING)], expireAfterSeconds=want, name="stored_at_ttl"
            )
        if want is not None and (existing is None or old is not None):
            await _backfill_stored_at(coll)
        if old is not None:  # last: a migration cut short is taken up at the next start
            await coll.drop_index(old["name"])

    async def indexes(self, collection: str) -> list[dict[str, Any]]:
        """Return the indexes of a collection (for tools and tests)."""
        await self._ensure_ready()
        coll = self._coll(collection)
        return [dict(index) async for index in await coll.list_indexes()]

    # --- writing ---------------------------------------------------------------------------

    async def append(
        self, events: Sequence[Event], *, tracking: Tracking | None = None
    ) -> AppendResult:
        """Store ``events``, then ``tracking``; see the module and the port for the rules.

        The events become visible to readers at once (a committed range) or not at all. The
        tracking record is written after them: a crash in between replays the consumer's last
        input, whose events are then duplicates.
        """
        await self._ensure_ready()
        result = AppendResult((), 0)
        async with self._write_lock:
            if events:
                result = await self._retrying("append", lambda: self._append_attempts(events))
            if tracking is not None:
                await self._retrying(
                    "tracking",
                    lambda: self._coll("tracking").update_one(
                        {"_id": tracking.name},
                        {"$set": {"position": tracking.position}},
                        upsert=True,
                    ),
                )
        self.stats.duplicates += result.duplicates
        if result.stored and result.stored[-1].position - self._mark >= self.checkpoint_every:
            # A writer that never reads (a collector) checkpoints and prunes `commits` too.
            await self._retrying("read", self._advance)
        return result

    async def _append_attempts(self, events: Sequence[Event]) -> AppendResult:
        refresh = False
        for _ in range(50):
            await self._abort_open()
            try:
                return await self._append_once(events, refresh)
            except _RetryError:
                self.stats.conflicts_retried += 1
                refresh = True
        raise StoreError("an append kept meeting concurrent writers after 50 attempts")

    async def _stream_state(self, stream: str, refresh: bool) -> _Stream:
        if not refresh and stream in self._streams:
            version, sequence = self._streams[stream]
            return _Stream(version, sequence, fresh=False)
        collection = documents.collection_of(stream)
        last = await self._last_settled(collection, {"stream": stream})
        sequence = None
        seq_field = _SEQUENCE_FIELD.get(collection)
        if seq_field is not None:
            market = await self._last_settled(
                collection, {"stream": stream, "type": {"$in": _MARKET_TYPES}}
            )
            if market is not None:
                sequence = int(market[seq_field])
        return _Stream(int(last["version"]) if last else 0, sequence, fresh=True)

    async def _last_settled(self, collection: str, query: Doc) -> Doc | None:
        """Return the highest-version document matching ``query`` that a commit stands for."""
        coll = self._coll(collection)
        while True:
            last = await coll.find_one(query, sort=[("version", DESCENDING)])
            if last is None or await self._settled(collection, last) != "aborted":
                return last
            # _settled deleted the aborted leftover: look again

    async def _existing_ids(self, events: Sequence[Event]) -> set[str]:
        """Return the ids of the non-market events already stored (and committed)."""
        by_collection: dict[str, list[str]] = {}
        for event in events:
            if type(event) not in SEQUENCE:
                by_collection.setdefault(documents.collection_of(event.stream), []).append(event.id)
        existing: set[str] = set()
        for name, ids in by_collection.items():
            found = self._coll(name).find({"_id": {"$in": ids}}, {"position": 1, "commit": 1})
            async for doc in found:
                if await self._settled(name, doc) == "committed":
                    existing.add(str(doc["_id"]))
        return existing

    async def _append_once(self, events: Sequence[Event], refresh: bool) -> AppendResult:
        # 1. Plan: skip duplicates, assign and check versions (the domain's rule).
        existing = await self._existing_ids(events)
        states: dict[str, _Stream] = {}
        for name in dict.fromkeys(e.stream for e in events):
            states[name] = await self._stream_state(name, refresh)
        try:
            plan = plan_append(events, states.__getitem__, existing)
        except ConcurrencyError as e:
            if not states[e.stream].fresh:  # a cached version: read the stream again
                raise _RetryError from None
            raise
        planned = list(zip(plan.events, plan.assigned, strict=True))
        duplicates = plan.duplicates
        if not planned:
            return AppendResult((), duplicates)

        # 2. Take a range of positions and record it as pending.
        n = len(planned)
        counter = await self._coll("counters").find_one_and_update(
            {"_id": "position"},
            {"$inc": {"value": n}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if counter is None:  # upsert returns the document; only a broken server gives none
            raise StoreError("MongoDB returned no position counter")
        last = int(counter["value"])
        first = last - n + 1
        opened = self._open = _Range(first, last, allocated=time.monotonic())
        now = dt.datetime.now(dt.UTC)
        try:
            await self._coll("commits").insert_one(
                {"_id": first, "last": last, "state": "pending", "at": now}
            )
        except DuplicateKeyError:
            self._open = None  # a reader declared the range dead before it was recorded
            raise _RetryError from None

        # 3. Insert, unordered, one insert_many per collection.
        by_collection: dict[str, list[Doc]] = {}
        to_document = documents.to_document
        collection_of = documents.collection_of
        for i, (event, _) in enumerate(planned):
            name = collection_of(event.stream)
            doc = to_document(event, first + i)
            doc["commit"] = first  # its range's record: found by _id, never by a range scan
            doc["stored_at"] = now  # the retention's clock (the TTL index of market data)
            by_collection.setdefault(name, []).append(doc)
        opened.collections.update(by_collection)
        refused: list[tuple[str, Doc]] = []
        for name, docs in by_collection.items():
            try:
                await self._coll(name).insert_many(docs, ordered=False)
            except BulkWriteError as e:
                details = e.details
                for error in details.get("writeErrors", []):
                    if error.get("code") != 11000:
                        await self._abort_open()
                        raise StoreError(f"MongoDB refused a write: {error.get('errmsg')}") from e
                    refused.append((name, docs[error["index"]]))
                if details.get("writeConcernErrors"):
                    await self._abort_open()
                    raise _RetryError from e

        # 4. Sort out what was refused: a duplicate, a conflict, or another writer's leftovers.
        skipped: set[int] = set()
        for name, doc in refused:
            outcome = await self._refused(name, doc, auto=planned[doc["position"] - first][1])
            if outcome == "duplicate":
                skipped.add(doc["position"])
            elif outcome == "retry":
                await self._abort_open()
                raise _RetryError
            else:
                await self._abort_open()
                raise ConcurrencyError(doc["stream"], doc["version"])

        # 5. Commit, unless too late (a reader may have declared the range dead meanwhile).
        if time.monotonic() - opened.allocated > self.commit_deadline:
            await self._abort_open()
            raise _RetryError
        flipped = await self._coll("commits").update_one(
            {"_id": first, "state": "pending"}, {"$set": {"state": "committed"}}
        )
        if flipped.matched_count == 0:
            await self._abort_open()
            raise _RetryError
        self._open = None

        stored = []
        for i, (event, _) in enumerate(planned):
            if first + i not in skipped:
                stored.append(StoredEvent(first + i, event))
        for name, state in states.items():
            self._streams[name] = (state.version, state.sequence)
        if skipped:
            self._streams.clear()  # another writer stored some first: the cache may be behind
        return AppendResult(tuple(stored), duplicates + len(skipped))

    async def _refused(self, collection: str, doc: Doc, *, auto: bool) -> str:
        """Classify a refused insert: ``duplicate``, ``retry`` or ``conflict``."""
        coll = self._coll(collection)
        blocking = await coll.find_one({"_id": doc["_id"]})
        same_id = blocking is not None
        if blocking is None:
            blocking = await coll.find_one({"stream": doc["stream"], "version": doc["version"]})
        if blocking is None:
            return "retry"  # it went away meanwhile (an aborted writer cleaned up)
        state = await self._settled(collection, blocking)
        if state != "committed":
            return "retry"  # leftovers of an aborted range, now deleted
        if same_id:
            return "duplicate" if not auto or blocking["version"] == doc["version"] else "retry"
        return "retry" if auto else "conflict"

    async def _settled(self, collection: str, doc: Doc) -> str:
        """Wait until the range holding ``doc`` is resolved; delete ``doc`` if aborted.

        Returns ``committed`` or ``aborted`` (or ``unknown`` for a document outside any
        recorded range, which only a writer that broke the protocol leaves). A document
        whose range is not recorded at or below the resolved checkpoint is ``committed``:
        committed ranges are pruned there, aborted ones kept.
        """
        position = int(doc["position"])
        first = doc.get("commit")
        if first is not None:  # its range's record, by _id: one index lookup on any server
            query: Doc = {"_id": int(first)}
            sort = None
        else:  # a document written before documents named their range
            query, sort = {"_id": {"$lte": position}}, [("_id", DESCENDING)]
        deadline = time.monotonic() + self.gap_timeout
        while True:
            commit = await self._coll("commits").find_one(query, sort=sort)
            state = "unknown" if commit is None or commit["last"] < position else commit["state"]
            if state == "unknown" and position <= await self._checkpoint():
                state = "committed"  # its record pruned behind the checkpoint
            if state == "pending" and time.monotonic() >= deadline:
                if await self._declare_dead(int(commit["_id"]), int(commit["last"])):  # type: ignore[index]
                    state = "aborted"
                continue
            if state == "aborted":
                await self._coll(collection).delete_one({"_id": doc["_id"], "position": position})
            if state != "pending":
                return str(state)
            await anyio.sleep(self.poll_interval)

    async def _declare_dead(self, first: int, last: int) -> bool:
        """Abort another writer's pending range; return whether this call did it."""
        result = await self._coll("commits").update_one(
            {"_id": first, "state": "pending"},
            {"$set": {"state": "aborted", "by": "reader", "at": dt.datetime.now(dt.UTC)}},
        )
        if result.matched_count == 0:
            return False
        self.stats.ranges_declared_dead += 1
        self._add_aborted(first, last)
        if self.on_problem is not None:
            self.on_problem(
                "range declared dead",
                f"positions {first}..{last} stayed pending for {self.gap_timeout}s",
            )
        for name in documents.ALL_COLLECTIONS:
            await self._coll(name).delete_many({"position": {"$gte": first, "$lte": last}})
        return True

    async def _abort_open(self) -> None:
        """Roll back this store's unfinished range, if any (idempotent, retried by callers)."""
        opened = self._open
        if opened is None:
            return
        if await self._checkpoint() >= opened.last:  # readers resolved it: their word holds
            record = await self._coll("commits").find_one({"_id": opened.first})
            if record is None or record["state"] == "committed":
                self._open = None  # committed, the answer lost (its record maybe pruned)
                return
        aborted = {"state": "aborted", "by": "writer", "at": dt.datetime.now(dt.UTC)}
        try:  # recorded as aborted at once if it was never recorded (readers need not wait)
            await self._coll("commits").insert_one(
                {"_id": opened.first, "last": opened.last, **aborted}
            )
        except DuplicateKeyError:
            flipped = await self._coll("commits").update_one(
                {"_id": opened.first, "state": "pending"}, {"$set": aborted}
            )
            if flipped.matched_count == 0:
                record = await self._coll("commits").find_one({"_id": opened.first})
                if record is not None and record["state"] == "committed":
                    # The commit went through but its answer was lost: the events are
                    # stored; the retry finds them as duplicates.
                    self._open = None
                    return
        for name in opened.collections:
            await self._coll(name).delete_many(
                {"position": {"$gte": opened.first, "$lte": opened.last}}
            )
        self._add_aborted(opened.first, opened.last)
        self.stats.ranges_aborted += 1
        self._open = None

    # --- reading ---------------------------------------------------------------------------

    def _add_aborted(self, first: int, last: int) -> None:
        aborted = self._aborted  # sorted, disjoint (ranges come from one counter)
        i = bisect_left(aborted, (first, last))
        if i == len(aborted) or aborted[i] != (first, last):
            aborted.insert(i, (first, last))

    def _is_aborted(self, position: int) -> bool:
        """Return whether ``position`` lies in a range known to be aborted: a binary search,
        since every document read asks and aborted ranges accumulate over a store's life."""
        aborted = self._aborted
        i = bisect_right(aborted, (position, _NO_END)) - 1  # the last range starting <= position
        return i >= 0 and aborted[i][1] >= position

    def _waited_out(self, position: int) -> bool:
        """Start or check the timer of the unresolved range starting at ``position``."""
        now = time.monotonic()
        if self._hole is None or self._hole[0] != position:
            self._hole = (position, now)
            return False
        return now - self._hole[1] >= self.gap_timeout

    async def _advance(self) -> int:
        """Move the resolved mark over every contiguous committed or aborted range.

        Near the head, where readers poll many times a second, the next record is looked
        up by ``_id``: ranges are contiguous from the position counter, so it is always
        ``mark + 1``, one index lookup on any server however many ranges exist (a range
        query sorted by ``_id`` is a full scan on some MongoDB stand-ins). A reader far
        behind (starting, or catching up) reads pages of records in one query each. Only
        a hole, positions taken from the counter and not recorded, needs the next record
        by range, after ``gap_timeout``.
        """
        mark = self._mark
        commits = self._coll("commits")
        counter = await self._coll("counters").find_one({"_id": "position"})
        top = int(counter["value"]) if counter is not None else 0
        blocked = False
        while mark < top and not blocked:
            page: list[Doc]
            if top - mark > _PAGE:
                found = commits.find({"_id": {"$gt": mark}}).sort("_id", 1).limit(_PAGE)
                page = [d async for d in found]
            else:
                record = await commits.find_one({"_id": mark + 1})
                if record is None and (resolved := await self._resolved_elsewhere(mark)) > mark:
                    mark = resolved  # another store resolved (and pruned) the ranges up to it
                    continue
                if record is None and self._waited_out(mark + 1):  # a hole: where it ends
                    record = await commits.find_one(
                        {"_id": {"$gt": mark}}, sort=[("_id", ASCENDING)]
                    )
                page = [record] if record is not None else []
            if not page:
                break  # a writer between taking its range and recording it, or caught up
            for commit in page:
                first, last, state = int(commit["_id"]), int(commit["last"]), commit["state"]
                if first > mark + 1:  # pruned, or taken from the counter but never recorded
                    if (resolved := await self._resolved_elsewhere(mark)) > mark:
                        mark = resolved
                        break  # read the records from there
                    if not self._waited_out(mark + 1):
                        blocked = True
                        break
                    try:
                        await commits.insert_one(
                            {"_id": mark + 1, "last": first - 1, "state": "aborted", "by": "reader"}
                        )
                    except DuplicateKeyError:
                        blocked = True  # its writer recorded it just now: read again
                        break
                    self._add_aborted(mark + 1, first - 1)
                    self.stats.ranges_declared_dead += 1
                if state == "pending":
                    if not (self._waited_out(first) and await self._declare_dead(first, last)):
                        blocked = True
                        break
                    state = "aborted"
                if state == "aborted":
                    self._add_aborted(first, last)
                mark = last
                self._hole = None
        if mark > self._mark:
            self._mark = mark
            if mark - self._checkpointed >= self.checkpoint_every:
                await self._coll("counters").update_one(
                    {"_id": "resolved"}, {"$max": {"value": mark}}, upsert=True
                )
                self._checkpointed = mark
                await self._prune_commits(mark)
        return self._mark

    async def _prune_commits(self, checkpoint: int) -> None:
        """Delete up to ``_PRUNE`` committed records wholly behind ``checkpoint``.

        They are needed no more: a store starts at the checkpoint, one behind jumps there
        (``_resolved_elsewhere``), and a document whose record is missing below it was
        committed (``_settled``). Aborted records are kept. Bounded, so each call stays well
        inside the socket timeout: the records of a store written before pruning existed
        (hundreds of thousands a day) go over the next checkpoints.
        """
        behind = {"_id": {"$lte": checkpoint}, "last": {"$lte": checkpoint}, "state": "committed"}
        found = self._coll("commits").find(behind, {"_id": 1}).limit(_PRUNE)
        ids = [d["_id"] async for d in found]
        if ids:
            pruned = await self._coll("commits").delete_many({**behind, "_id": {"$in": ids}})
            self.stats.commits_pruned += pruned.deleted_count

    async def _checkpoint(self) -> int:
        """Return the resolved checkpoint recorded in ``counters`` (0 when none)."""
        found = await self._coll("counters").find_one({"_id": "resolved"})
        return int(found["value"]) if found is not None else 0

    async def _resolved_elsewhere(self, mark: int) -> int:
        """Return the resolved checkpoint another store recorded if it is past ``mark``
        (the committed ranges up to it may be pruned), having learnt the aborted ranges in
        between; else ``mark``."""
        resolved = await self._checkpoint()
        if resolved <= mark:
            return mark
        aborted = self._coll("commits").find(
            {"state": "aborted", "_id": {"$gt": mark, "$lte": resolved}}, {"last": 1}
        )
        async for d in aborted:
            self._add_aborted(int(d["_id"]), int(d["last"]))
        self._hole = None
        return resolved

    def _decode(self, doc: Doc, levels: bool = True) -> Event | None:
        try:
            return documents.from_document(doc, levels=levels)
        except InvalidInputError as e:
            self.stats.malformed += 1
            if self.on_problem is not None:
                self.on_problem("stored document skipped", str(e))
            return None

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
        await self._ensure_ready()
        return await self._retrying("read", lambda: self._read_all(after, limit, types, levels))

    async def _read_all(
        self, after: int, limit: int, types: tuple[type[Event], ...] | None, levels: bool
    ) -> list[StoredEvent]:
        mark = await self._advance()
        if types is None:
            names: tuple[str, ...] = documents.ALL_COLLECTIONS
            type_names: list[str] | None = None
        else:
            names = tuple(
                dict.fromkeys(c for t in types for c in documents.TYPE_COLLECTIONS.get(t, ()))
            )
            type_names = [t.__name__ for t in types]
        out: list[StoredEvent] = []
        cursor = after
        while cursor < mark and len(out) < limit:
            query: Doc = {"position": {"$gt": cursor, "$lte": mark}}
            if type_names is not None:
                query["type"] = {"$in": type_names}
            page: list[Doc] = []
            for name in names:
                found = self._coll(name).find(query).sort("position", 1).limit(limit)
                page.extend([d async for d in found])
            page.sort(key=lambda d: d["position"])
            page = page[:limit]
            with codec.gc_paused():
                for doc in page:
                    position = int(doc["position"])
                    if self._aborted and self._is_aborted(position):
                        continue
                    event = self._decode(doc, levels)
                    if event is not None:
                        out.append(StoredEvent(position, event))
            if len(page) < limit:
                break
            cursor = int(page[-1]["position"])
        return out[:limit]

    async def read_stream(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Return a stream's events after ``after_version``, in version order."""
        await self._ensure_ready()

        async def read() -> list[Event]:
            coll = self._coll(documents.collection_of(stream))
            found = coll.find({"stream": stream, "version": {"$gt": after_version}})
            found = found.sort("version", 1)
            if limit is not None:
                found = found.limit(limit)
            out = []
            async for doc in found:
                if not self._is_aborted(int(doc["position"])):
                    event = self._decode(doc)
                    if event is not None:
                        out.append(event)
            return out

        return await self._retrying("read", read)

    async def last_event(self, stream: str) -> Event | None:
        """Return the stream's latest event, if any."""
        await self._ensure_ready()

        async def read() -> Event | None:
            coll = self._coll(documents.collection_of(stream))
            found = coll.find({"stream": stream}).sort("version", -1).limit(10)
            async for doc in found:
                if not self._is_aborted(int(doc["position"])):
                    return self._decode(doc)
            return None

        return await self._retrying("read", read)

    async def head(self) -> int:
        """Return the highest resolved position (0 when empty)."""
        await self._ensure_ready()
        return await self._retrying("read", self._advance)

    async def wait(self, after: int, timeout: float) -> bool:
        """Poll, every ``poll_interval`` seconds, for a resolved position above ``after``."""
        return await wait_for_head(self.head, after, timeout, self.poll_interval)

    async def tracking_position(self, name: str) -> int:
        """Return the position recorded for a consumer (0 when none)."""
        await self._ensure_ready()
        doc = await self._retrying("read", lambda: self._coll("tracking").find_one({"_id": name}))
        return 0 if doc is None else int(doc["position"])

    async def ping(self) -> None:
        """Send one ``ping`` command (no retry: health probes want the truth now)."""
        try:
            with pymongo.timeout(self.server_timeout):  # the driver's own deadline: no cancel
                await self._client.admin.command("ping")
        except PyMongoError as e:
            raise StoreError(f"MongoDB does not answer: {str(e).split(',')[0]}") from e

    async def close(self) -> None:
        """Roll back an unfinished append (best effort) and close the client."""
        if self._open is not None:
            with anyio.move_on_after(2.0, shield=True):
                with contextlib.suppress(PyMongoError):  # else readers declare it dead later
                    await self._abort_open()
        await self._client.close()
