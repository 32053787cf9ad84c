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
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import pymongo
from pymongo import DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    DuplicateKeyError,
    InvalidURI,
    PyMongoError,
)
from pymongo.errors import ConfigurationError as MongoConfigurationError

from algotrade.adapters import codec
from algotrade.adapters.mongo import documents
from algotrade.adapters.mongo.commits import CommitLog, Range
from algotrade.adapters.mongo.retries import MongoStats, OnRetry, RetryError, retrying
from algotrade.adapters.mongo.schema import DEFAULT_RETENTION, create_indexes, database_name
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
OnProblem = Callable[[str, str], None]

SEQUENCE = SEQUENCE_FIELD  # the natural order's field, by market event class
_SEQUENCE_FIELD = {"depth": "final_update_id", "trades": "trade_id"}
_MARKET_TYPES = [cls.__name__ for cls in SEQUENCE]


@dataclass(slots=True)
class _Stream:
    version: int
    sequence: int | None
    fresh: bool  # read from the database in this attempt, not from the cache


class MongoEventStore(CommitLog):
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
        self._open: Range | None = None
        self._mark = 0
        self._checkpointed = 0
        self._aborted: list[tuple[int, int]] = []
        self._hole: tuple[int, float] | None = None

    # --- plumbing --------------------------------------------------------------------------

    def _coll(self, name: str) -> AsyncCollection[Doc]:
        return self._db[name]

    async def _retrying(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` until it succeeds, retrying transient failures (see :func:`retrying`)."""
        return await retrying(what, op, give_up_after=self.give_up_after,
                              max_delay=self.retry_max_delay, on_retry=self.on_retry,
                              stats=self.stats)  # fmt: skip

    async def _create_indexes(self) -> None:
        """Create every index and load the readers' starting point (the commit log's)."""
        await create_indexes(self._client, self._db, self.depth_retention)
        self._mark = self._checkpointed = await self._checkpoint()
        aborted = self._coll("commits").find({"state": "aborted"}, {"last": 1})
        self._aborted = sorted([(int(d["_id"]), int(d["last"])) async for d in aborted])

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await self._retrying("start-up", self._create_indexes)
                self._ready = True

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
            except RetryError:
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
                raise RetryError from None
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
        opened = self._open = Range(first, last, allocated=time.monotonic())
        now = dt.datetime.now(dt.UTC)
        try:
            await self._coll("commits").insert_one(
                {"_id": first, "last": last, "state": "pending", "at": now}
            )
        except DuplicateKeyError:
            self._open = None  # a reader declared the range dead before it was recorded
            raise RetryError from None

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
                    raise RetryError from e

        # 4. Sort out what was refused: a duplicate, a conflict, or another writer's leftovers.
        skipped: set[int] = set()
        for name, doc in refused:
            outcome = await self._refused(name, doc, auto=planned[doc["position"] - first][1])
            if outcome == "duplicate":
                skipped.add(doc["position"])
            elif outcome == "retry":
                await self._abort_open()
                raise RetryError
            else:
                await self._abort_open()
                raise ConcurrencyError(doc["stream"], doc["version"])

        # 5. Commit, unless too late (a reader may have declared the range dead meanwhile).
        if time.monotonic() - opened.allocated > self.commit_deadline:
            await self._abort_open()
            raise RetryError
        flipped = await self._coll("commits").update_one(
            {"_id": first, "state": "pending"}, {"$set": {"state": "committed"}}
        )
        if flipped.matched_count == 0:
            await self._abort_open()
            raise RetryError
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

    # --- reading ---------------------------------------------------------------------------

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
