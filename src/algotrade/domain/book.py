"""The L2 order book and Binance's procedure for keeping a local copy of it correct.

:class:`OrderBook` holds price levels. :class:`BookSynchronizer` wraps one book and applies
Binance's documented rules for a local book built from a snapshot and a diff stream:

1. Buffer diffs until a snapshot arrives.
2. Drop buffered diffs whose final update id ``u`` is ``<= lastUpdateId``.
3. The first applied diff must satisfy ``U <= lastUpdateId + 1 <= u``; otherwise the
   snapshot is older than the buffer and a newer one is needed.
4. Afterwards every diff's ``U`` must equal the previous ``u + 1``.

A broken rule or a crossed book never resets silently: it yields a
:class:`~algotrade.domain.events.SequenceGapDetected` event and asks for a new snapshot.
"""

from __future__ import annotations

import dataclasses
import heapq
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Protocol

from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    SequenceGapDetected,
    applied,
)
from algotrade.domain.values import GapReason, PriceLevel, TopOfBook


class Book(Protocol):
    """What :class:`BookSynchronizer` needs of a book: :class:`OrderBook`, or a faster one
    with the same results (the compiled ``algotrade.adapters.speedups`` book)."""

    def clear(self) -> None: ...
    def load(self, bids: Iterable[PriceLevel], asks: Iterable[PriceLevel]) -> None: ...
    def apply(self, bids: Iterable[PriceLevel], asks: Iterable[PriceLevel]) -> None: ...
    def best_bid(self) -> PriceLevel | None: ...
    def best_ask(self) -> PriceLevel | None: ...
    def top(self) -> TopOfBook | None: ...
    def is_crossed(self) -> bool: ...
    def levels(self) -> tuple[tuple[PriceLevel, ...], tuple[PriceLevel, ...]]: ...
    def __len__(self) -> int: ...


class OrderBook:
    """Price levels of one symbol, bids and asks, with the best prices at hand.

    Each side keeps its levels in a dict and, sorted, only the prices near its top: the
    *window*, every price of the side at or better than the window's *edge* (no edge: every
    price). Most changes land near the top; one deeper than the edge costs a comparison
    instead of a search and an insertion into a list of the whole side (a Binance snapshot
    has 1,000 levels a side). Grown past ``2 * window`` prices, the window is cut back to
    the best ``window``; emptied (the top swept away), it is refilled from the dict.
    """

    __slots__ = ("_ask_edge", "_ask_window", "_asks", "_bid_edge", "_bid_window", "_bids", "_size")

    def __init__(self, window: int = 48) -> None:
        if window < 1:
            raise ConfigurationError("window", f"must be at least 1, got {window}")
        self._size = window
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        # Both sorted ascending: the best bid is the last bid price, the best ask the first.
        self._bid_window: list[Decimal] = []
        self._ask_window: list[Decimal] = []
        self._bid_edge: Decimal | None = None  # the window holds every bid >= the edge
        self._ask_edge: Decimal | None = None  # the window holds every ask <= the edge

    def clear(self) -> None:
        """Remove every level."""
        self._bids.clear()
        self._asks.clear()
        self._bid_window.clear()
        self._ask_window.clear()
        self._bid_edge = self._ask_edge = None

    def load(self, bids: Iterable[PriceLevel], asks: Iterable[PriceLevel]) -> None:
        """Replace the whole book by a snapshot's levels."""
        self.clear()
        self._bids.update((p, q) for p, q in bids if q)
        self._asks.update((p, q) for p, q in asks if q)
        self._refill_bids()
        self._refill_asks()

    def apply(self, bids: Iterable[PriceLevel], asks: Iterable[PriceLevel]) -> None:
        """Set each level's quantity; a quantity of zero removes the level."""
        # The two sides mirror each other; written out, as this runs for every level.
        levels, window, edge = self._bids, self._bid_window, self._bid_edge
        for price, qty in bids:
            if qty:
                if price not in levels and (edge is None or price >= edge):
                    insort(window, price)
                levels[price] = qty
            elif price in levels:
                del levels[price]
                if edge is None or price >= edge:
                    del window[bisect_left(window, price)]
        if len(window) > 2 * self._size:
            del window[: -self._size]
            self._bid_edge = window[0]
        elif not window and levels:
            self._refill_bids()
        levels, window, edge = self._asks, self._ask_window, self._ask_edge
        for price, qty in asks:
            if qty:
                if price not in levels and (edge is None or price <= edge):
                    insort(window, price)
                levels[price] = qty
            elif price in levels:
                del levels[price]
                if edge is None or price <= edge:
                    del window[bisect_left(window, price)]
        if len(window) > 2 * self._size:
            del window[self._size :]
            self._ask_edge = window[-1]
        elif not window and levels:
            self._refill_asks()

    def _refill_bids(self) -> None:
        self._bid_window[:], self._bid_edge = _best_prices(self._bids, self._size, highest=True)

    def _refill_asks(self) -> None:
        self._ask_window[:], self._ask_edge = _best_prices(self._asks, self._size, highest=False)

    def best_bid(self) -> PriceLevel | None:
        """Return the highest bid level, if any."""
        if not self._bid_window:
            return None
        price = self._bid_window[-1]
        return price, self._bids[price]

    def best_ask(self) -> PriceLevel | None:
        """Return the lowest ask level, if any."""
        if not self._ask_window:
            return None
        price = self._ask_window[0]
        return price, self._asks[price]

    def top(self) -> TopOfBook | None:
        """Return best bid and ask, or ``None`` while either side is empty."""
        if not self._bid_window or not self._ask_window:
            return None
        bid = self._bid_window[-1]
        ask = self._ask_window[0]
        return TopOfBook(bid, self._bids[bid], ask, self._asks[ask])

    def is_crossed(self) -> bool:
        """Return whether the best bid is at or above the best ask."""
        return bool(self._bid_window and self._ask_window) and (
            self._bid_window[-1] >= self._ask_window[0]
        )

    def levels(self) -> tuple[tuple[PriceLevel, ...], tuple[PriceLevel, ...]]:
        """Return (bids best first, asks best first): every level, sorted (not a hot path)."""
        bids = tuple((p, self._bids[p]) for p in sorted(self._bids, reverse=True))
        asks = tuple((p, self._asks[p]) for p in sorted(self._asks))
        return bids, asks

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)


def _best_prices(
    levels: dict[Decimal, Decimal], size: int, *, highest: bool
) -> tuple[list[Decimal], Decimal | None]:
    """Return a side's window (ascending) and its edge: every price while the side has at
    most ``2 * size``, else the best ``size`` and the worst of them."""
    if len(levels) <= 2 * size:
        return sorted(levels), None
    if highest:
        window = heapq.nlargest(size, levels)
        window.reverse()
        return window, window[0]
    window = heapq.nsmallest(size, levels)
    return window, window[-1]


class BookSynchronizer:
    """One symbol's local book kept in sync with Binance's snapshot + diff procedure.

    Feed every diff to :meth:`on_diff` and every snapshot to :meth:`on_snapshot`, in the
    order they arrived. Each returns the events to store, in order: the snapshot and the
    applied diffs (each with ``top`` filled in), or a gap event. After a gap event,
    :attr:`needs_snapshot` is true until a usable snapshot arrives.

    The synchronizer numbers the events of the symbol's depth stream: ``version`` is the
    stream's last stored version, and updates up to ``stored_through`` (the last stored
    update id) are applied to the book but not emitted again, so a restarted collector or
    a re-played recording never stores a depth event twice.

    ``book`` (an empty :class:`OrderBook` by default) and ``applied`` (how an applied diff
    is copied with its version and top of book) let a faster implementation of either
    stand in, with the same results.
    """

    def __init__(
        self,
        symbol: str,
        *,
        exchange: str,
        max_buffer: int = 10_000,
        version: int = 0,
        stored_through: int = 0,
        book: Book | None = None,
        applied: Callable[[DepthDiffReceived, int, TopOfBook | None], DepthDiffReceived] = applied,
    ) -> None:
        self.symbol = symbol
        self.exchange = exchange
        self.version = version
        self.stored_through = stored_through
        self.book: Book = OrderBook() if book is None else book
        self._applied = applied
        self.synced = False
        self.needs_snapshot = True
        self.last_update_id = 0
        self._buffer: deque[DepthDiffReceived] = deque()
        self._max_buffer = max_buffer
        self._skew: int | None = None  # receive - exchange time of the last diff
        self._resumed = stored_through > 0  # continuing a stored stream (a restart)
        self.gaps = 0

    def on_diff(self, diff: DepthDiffReceived) -> list[Event]:
        """Apply or buffer one diff; return the events to store."""
        self._skew = diff.receive_ts - diff.exchange_ts
        if not self.synced:
            if len(self._buffer) >= self._max_buffer:
                dropped = self._buffer.popleft()
                gap = self._gap(GapReason.BUFFER_OVERFLOW, dropped.first_update_id, diff)
                self._buffer.append(diff)
                return gap
            self._buffer.append(diff)
            return []
        return self._apply(diff)

    def on_snapshot(self, snapshot: BookSnapshotTaken) -> list[Event]:
        """Start (or restart) the book from a snapshot; return the events to store.

        A REST snapshot carries no exchange time: its parser stamps it with the local
        receive time. Stored as is, it would be the newest price of the stream wherever the
        two clocks differ (and freeze the bars of an exchange whose clock is behind). It is
        stamped on the exchange's clock instead: the receive time less the skew of the
        diffs (receive less exchange time of the last one), kept between the exchange times
        of the last diff it contains and of the first one after it.
        """
        last = snapshot.last_update_id
        before = None
        while self._buffer and self._buffer[0].final_update_id <= last:
            before = self._buffer.popleft()
        snapshot = self._on_exchange_clock(snapshot, before)
        if self._buffer and self._buffer[0].first_update_id > last + 1:
            # The snapshot is older than every buffered diff: updates in between are lost.
            return self._gap(GapReason.STALE_SNAPSHOT, last + 1, self._buffer[0])
        self.book.load(snapshot.bids, snapshot.asks)
        self.last_update_id = last
        self.synced = True
        self.needs_snapshot = False
        out: list[Event] = []
        if self._resumed and last > self.stored_through:
            self.version += 1
            self.gaps += 1
            out.append(
                gap_before(
                    snapshot, GapReason.RESTART, self.stored_through + 1, last + 1, self.version
                )
            )
        self._resumed = False
        if last > self.stored_through:
            self.version += 1
            self.stored_through = last
            out.append(dataclasses.replace(snapshot, version=self.version, top=self.book.top()))
        buffered = list(self._buffer)
        self._buffer.clear()
        for diff in buffered:
            if not self.synced:
                self._buffer.append(diff)
                continue
            out.extend(self._apply(diff))
        return out

    def _on_exchange_clock(
        self, snapshot: BookSnapshotTaken, before: DepthDiffReceived | None
    ) -> BookSnapshotTaken:
        if snapshot.exchange_ts != snapshot.receive_ts or self._skew is None:
            return snapshot  # stamped by the exchange already, or no diff to tell the skew
        estimate = snapshot.receive_ts - self._skew
        if self._buffer:
            estimate = min(estimate, self._buffer[0].exchange_ts)
        if before is not None:
            estimate = max(estimate, before.exchange_ts)
        return dataclasses.replace(snapshot, exchange_ts=estimate)

    def _apply(self, diff: DepthDiffReceived) -> list[Event]:
        if diff.final_update_id <= self.last_update_id:
            return []  # already contained in the book (a stale or repeated diff)
        # Binance's procedure (November 2025): a diff whose U is above the book's id + 1
        # misses updates; one that overlaps the book's last updates (U <= id < u) applies.
        if diff.first_update_id > self.last_update_id + 1:
            gap = self._gap(GapReason.GAP, self.last_update_id + 1, diff)
            self._buffer.append(diff)
            return gap
        book = self.book
        book.apply(diff.bids, diff.asks)
        top = book.top()
        if top is not None and top.bid_price >= top.ask_price:
            return self._gap(GapReason.CROSSED, diff.final_update_id + 1, diff)
        final = self.last_update_id = diff.final_update_id
        if final <= self.stored_through:
            return []
        self.stored_through = final
        self.version += 1
        return [self._applied(diff, self.version, top)]

    def _gap(self, reason: GapReason, expected: int, diff: DepthDiffReceived) -> list[Event]:
        self.synced = False
        self.needs_snapshot = True
        self.gaps += 1
        if diff.final_update_id <= self.stored_through:
            return []  # a gap inside what is already stored was recorded back then
        self.version += 1
        gap = gap_before(diff, reason, expected, diff.first_update_id, self.version)
        return [gap]


def continue_stream(events: Iterable[Event], through: int) -> list[Event]:
    """Return one symbol's depth events to append after another writer's, stored through
    update id ``through`` (a second collector taking over a stream, hot standby).

    What the stored stream already covers is dropped; a jump past it (a diff starting
    later, a snapshot ahead of it) is preceded by a gap event, so updates that only one
    writer saw and neither stored are recorded as missing, never silently skipped. A gap
    this writer saw starts where the stored stream ends; one the stored stream already
    fills is dropped. Returned events keep their version (the caller renumbers them).
    """
    out: list[Event] = []
    reached = through
    for event in events:
        if isinstance(event, SequenceGapDetected):
            if event.received_update_id - 1 <= reached:
                continue  # the other writer's data fills it
            if out and isinstance(out[-1], SequenceGapDetected):
                out[-1] = dataclasses.replace(out[-1], received_update_id=event.received_update_id)
            else:
                out.append(dataclasses.replace(event, expected_update_id=reached + 1))
            continue  # reached stays: the snapshot that follows extends this gap, and stays
        if isinstance(event, DepthDiffReceived):
            first, last = event.first_update_id, event.final_update_id
        elif isinstance(event, BookSnapshotTaken):
            first, last = event.last_update_id + 1, event.last_update_id
        else:
            out.append(event)
            continue
        if last <= reached:
            continue
        if first > reached + 1:
            _missing(out, event, reached + 1, first)
        out.append(event)
        reached = last
    return out


def _missing(
    out: list[Event], at: DepthDiffReceived | BookSnapshotTaken, expected: int, received: int
) -> None:
    """Record updates ``expected .. received - 1`` as missing before ``at``."""
    if out and isinstance(out[-1], SequenceGapDetected):
        out[-1] = dataclasses.replace(out[-1], received_update_id=received)
        return
    out.append(gap_before(at, GapReason.RESTART, expected, received, 0))


def gap_before(
    at: DepthDiffReceived | BookSnapshotTaken,
    reason: GapReason,
    expected: int,
    received: int,
    version: int,
) -> SequenceGapDetected:
    """Return the gap event recorded just before ``at`` (same stream, symbol and times)."""
    return SequenceGapDetected(
        stream=at.stream,
        version=version,
        exchange_ts=at.exchange_ts,
        receive_ts=at.receive_ts,
        exchange=at.exchange,
        symbol=at.symbol,
        reason=reason,
        expected_update_id=expected,
        received_update_id=received,
    )
