"""The commit log of the MongoDB store: ranges of positions, pending, committed or aborted.

An append takes a range of global positions from a counter, records it ``pending`` in
``commits``, inserts its documents, then flips it to ``committed``. Readers return only
positions up to the highest contiguous resolved range (the mark), so a slow writer's range
is never skipped and a failed append's documents are never seen. A range pending longer
than ``gap_timeout`` is declared dead by a reader (the flip is atomic), and a hole (positions
taken and never recorded) is recorded aborted. Committed records behind the resolved
checkpoint (``counters.resolved``) are pruned; aborted ones are kept.

:class:`CommitLog` is that protocol, as the part of :class:`~algotrade.adapters.mongo.store.
MongoEventStore` that keeps it.
"""

from __future__ import annotations

import datetime as dt
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from algotrade.adapters.mongo import documents
from algotrade.adapters.mongo.retries import MongoStats

Doc = dict[str, Any]
_PAGE = 500
_PRUNE = 10_000  # committed records deleted at most per checkpoint
_NO_END = 2**63  # above any position: (position, _NO_END) sorts after every range at it


@dataclass(slots=True)
class Range:
    """A range of positions one append took from the counter, and where it wrote."""

    first: int
    last: int
    collections: set[str] = field(default_factory=set)
    allocated: float = 0.0


class CommitLog:
    """The ranges of one store: its open one, the aborted ones it knows, its mark."""

    stats: MongoStats
    gap_timeout: float
    poll_interval: float
    checkpoint_every: int
    on_problem: Callable[[str, str], None] | None
    _open: Range | None
    _mark: int
    _checkpointed: int
    _aborted: list[tuple[int, int]]
    _hole: tuple[int, float] | None

    def _coll(self, name: str) -> AsyncCollection[Doc]:
        raise NotImplementedError  # the store's collections

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
