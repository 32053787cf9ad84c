"""What an append stores, skips as a duplicate, or refuses: the one rule every store follows.

A market event (a depth diff, a book snapshot, a trade) has a natural order within its
stream: its final update id, its last update id, its trade id. One at or below the highest
stored in its stream is already covered (stored, or superseded by what is): a duplicate.
Every other event is a duplicate when its ``id`` is already stored. What is not a duplicate
takes the stream's next version: an event given version 0 is assigned it, an event given
another version than the next one is a conflict, and the whole batch is refused.

The stores (in memory, SQLite, MongoDB) read what they hold of each stream, call
:func:`plan_append`, and write the plan; the contract suite checks they agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

from algotrade.domain.errors import ConcurrencyError
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    TradeReceived,
    with_version,
)

#: Each market event class's natural order within its stream.
SEQUENCE: dict[type[Event], Callable[[Any], int]] = {
    DepthDiffReceived: attrgetter("final_update_id"),
    BookSnapshotTaken: attrgetter("last_update_id"),
    TradeReceived: attrgetter("trade_id"),
}
#: The field holding that order, by class (stores that query it by name).
SEQUENCE_FIELD: dict[type[Event], str] = {
    DepthDiffReceived: "final_update_id",
    BookSnapshotTaken: "last_update_id",
    TradeReceived: "trade_id",
}


class StreamCursor(Protocol):
    """What a store knows of one stream while it plans: its last version and the highest
    natural order of its market events (``None``: none stored). The plan moves both."""

    version: int
    sequence: int | None


@dataclass(slots=True)
class StreamState:
    """A plain :class:`StreamCursor`."""

    version: int = 0
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class AppendPlan:
    """The events to store, in order and each at its version, and the duplicates skipped.

    ``assigned[i]`` says whether ``events[i]`` was given version 0 (the store chose it).
    """

    events: list[Event]
    assigned: list[bool]
    duplicates: int


def sequence_of(event: Event) -> int | None:
    """Return a market event's natural order in its stream (``None``: not a market event)."""
    getter = SEQUENCE.get(type(event))
    return None if getter is None else getter(event)


def plan_append(
    events: Sequence[Event], cursor: Callable[[str], StreamCursor], existing: set[str]
) -> AppendPlan:
    """Plan one append of ``events``.

    Args:
        events: the batch, in order.
        cursor: the state of a stream by name, as the store holds it; the plan moves it past
            each planned event (a store that keeps cursors between appends gives copies, or
            drops them when the append fails).
        existing: the ids of the batch's non-market events already stored; the planned ones
            are added to it.

    Raises:
        ConcurrencyError: an event names a version other than its stream's next one; nothing
            of the batch may be stored.
    """
    planned: list[Event] = []
    assigned: list[bool] = []
    duplicates = 0
    sequence = SEQUENCE.get
    for event in events:
        state = cursor(event.stream)
        getter = sequence(type(event))
        if getter is not None:
            seq = getter(event)
            known = state.sequence
            if known is not None and seq <= known:
                duplicates += 1
                continue
        else:
            eid = event.id
            if eid in existing:
                duplicates += 1
                continue
            existing.add(eid)
        version = event.version
        auto = version == 0
        if auto:
            version = state.version + 1
            event = with_version(event, version)
        elif version != state.version + 1:
            raise ConcurrencyError(event.stream, version)
        state.version = version
        if getter is not None:
            state.sequence = seq
        planned.append(event)
        assigned.append(auto)
    return AppendPlan(planned, assigned, duplicates)
