"""The order book and Binance's sync procedure: buffer, drop stale, sequence, gaps as events."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from algotrade.adapters import speedups
from algotrade.domain.book import Book, BookSynchronizer, OrderBook, continue_stream
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BookSnapshotTaken, DepthDiffReceived, Event, SequenceGapDetected
from algotrade.domain.values import GapReason
from tests.support.builders import D, diff, snapshot

#: The Python book and, when built, the compiled one: each test of a book runs on both.
BOOKS = [OrderBook] + ([speedups.compiled_book] if speedups.compiled_book else [])
books = pytest.mark.parametrize("make", BOOKS, ids=lambda make: make.__module__)


@books
def test_book_reports_best_levels_and_mid(make: type[Book]) -> None:
    """Best bid is the highest bid, best ask the lowest ask; zero quantity removes a level."""
    book = make()
    book.load([(D(100), D(1)), (D(99), D(2))], [(D(101), D(3)), (D(102), D(4))])
    book.apply([(D("100.5"), D(5)), (D(100), D(0))], [(D(101), D(0))])
    top = book.top()
    assert top is not None
    assert (top.bid_price, top.bid_qty, top.ask_price, top.ask_qty) == (
        D("100.5"),
        D(5),
        D(102),
        D(4),
    )
    assert top.mid == D("101.25")
    assert len(book) == 3


level_changes = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=40).map(Decimal),
        st.integers(min_value=0, max_value=3).map(Decimal),
    ),
    max_size=8,
)


@books
@given(st.lists(st.tuples(level_changes, level_changes), max_size=40))
def test_any_diff_sequence_equals_rebuild(
    make: type[Book],
    diffs: list[tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]],
) -> None:
    """Applying diffs one by one gives the book that the final level states describe."""
    book = make()
    final_bids: dict[Decimal, Decimal] = {}
    final_asks: dict[Decimal, Decimal] = {}
    for bids, asks in diffs:
        book.apply(bids, asks)
        final_bids.update(bids)
        final_asks.update(asks)
    rebuilt = make()
    rebuilt.load(final_bids.items(), final_asks.items())
    assert book.levels() == rebuilt.levels()
    bid_levels, ask_levels = book.levels()
    assert [p for p, _ in bid_levels] == sorted((p for p, _ in bid_levels), reverse=True)
    assert [p for p, _ in ask_levels] == sorted(p for p, _ in ask_levels)


@books
@given(
    st.integers(min_value=1, max_value=4),
    st.lists(st.integers(min_value=1, max_value=60), unique=True, max_size=30),
    st.lists(st.tuples(level_changes, level_changes), max_size=60),
)
def test_the_top_is_right_after_every_diff_whatever_the_window(
    make: type[Book],
    window: int,
    loaded: list[int],
    diffs: list[tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]],
) -> None:
    """The sorted window of prices near the top fills, trims and refills correctly.

    Windows of 1 to 4 prices against books of up to 60 levels a side: every path (a change
    beyond the edge, a window over twice its size, a window emptied and refilled) runs.
    """
    book = make(window=window)  # type: ignore[call-arg]  # both take a window
    bids = {Decimal(p): Decimal(1) for p in loaded}
    asks = {Decimal(p + 20): Decimal(2) for p in loaded}
    book.load(bids.items(), asks.items())
    for diff_bids, diff_asks in diffs:
        book.apply(diff_bids, diff_asks)
        for model, changes in ((bids, diff_bids), (asks, diff_asks)):
            for price, qty in changes:
                if qty:
                    model[price] = qty
                else:
                    model.pop(price, None)
        best_bid = max(bids, default=None)
        best_ask = min(asks, default=None)
        assert book.best_bid() == (None if best_bid is None else (best_bid, bids[best_bid]))
        assert book.best_ask() == (None if best_ask is None else (best_ask, asks[best_ask]))
        assert len(book) == len(bids) + len(asks)
    assert book.levels() == (
        tuple(sorted(bids.items(), reverse=True)),
        tuple(sorted(asks.items())),
    )


@books
def test_a_price_back_at_the_edge_returns_to_the_window(make: type[Book]) -> None:
    """The edge level removed and set again is in the window: its next removal takes it,
    not the window's lowest other price (which would hide the best bid)."""
    book = make(window=2)  # type: ignore[call-arg]
    book.load([(D(p), D(1)) for p in range(1, 11)], [(D(20), D(1))])  # window 9, 10
    book.apply([(D(9), D(0))], [])
    book.apply([(D(9), D(1))], [])
    book.apply([(D(9), D(0)), (D("9.5"), D(1))], [])
    assert book.best_bid() == (D(10), D(1))


@books
def test_removing_the_best_levels_one_by_one_walks_down_the_book(make: type[Book]) -> None:
    """Each removal of the best level uncovers the next one, through the window's refills."""
    book = make(window=2)  # type: ignore[call-arg]
    book.load([(D(p), D(1)) for p in range(1, 11)], [(D(p), D(1)) for p in range(11, 21)])
    for bid, ask in zip(range(10, 1, -1), range(11, 20), strict=True):
        book.apply([(D(bid), D(0))], [(D(ask), D(0))])
        assert book.best_bid() == (D(bid - 1), D(1))
        assert book.best_ask() == (D(ask + 1), D(1))


@books
def test_a_window_must_hold_a_price(make: type[Book]) -> None:
    """A window of no price is refused (the compiled book, an adapter's, says ValueError)."""
    with pytest.raises((ConfigurationError, ValueError), match="window"):
        make(window=0)  # type: ignore[call-arg]


def synced(last: int = 10) -> BookSynchronizer:
    """Return a synchronizer started from a snapshot at ``last``."""
    sync = BookSynchronizer("BTCUSDT", exchange="test")
    sync.on_snapshot(snapshot(last))
    return sync


def test_buffers_until_snapshot_then_applies_in_order() -> None:
    """Diffs before the snapshot are buffered; stale ones dropped; the rest applied in order."""
    sync = BookSynchronizer("BTCUSDT", exchange="test")
    assert sync.on_diff(diff(5, 8, [("99", "1")])) == []
    assert sync.on_diff(diff(9, 12, [("100.5", "2")])) == []
    assert sync.on_diff(diff(13, 13, asks=[("100.9", "1")])) == []
    out = sync.on_snapshot(snapshot(10))
    assert [type(e) for e in out] == [BookSnapshotTaken, DepthDiffReceived, DepthDiffReceived]
    assert [e.version for e in out] == [1, 2, 3]
    assert sync.synced
    last = out[-1]
    assert isinstance(last, DepthDiffReceived)
    top = last.top
    assert top is not None
    assert (top.bid_price, top.ask_price) == (D("100.5"), D("100.9"))


def test_gap_is_an_event_and_asks_for_a_snapshot() -> None:
    """A missing update id yields a gap event with the missing range, never a silent reset."""
    sync = synced(10)
    assert len(sync.on_diff(diff(11, 12))) == 1
    out = sync.on_diff(diff(15, 16))
    assert len(out) == 1
    gap = out[0]
    assert isinstance(gap, SequenceGapDetected)
    assert (gap.reason, gap.expected_update_id, gap.received_update_id) == (GapReason.GAP, 13, 15)
    assert sync.needs_snapshot
    assert not sync.synced
    # The resync starts from the next snapshot, keeping the buffered diff if still needed.
    out = sync.on_snapshot(snapshot(15, bids=[("100", "2")]))
    assert [type(e) for e in out] == [BookSnapshotTaken, DepthDiffReceived]
    assert sync.synced


def test_stale_snapshot_is_a_gap() -> None:
    """A snapshot older than every buffered diff cannot start the book."""
    sync = BookSynchronizer("BTCUSDT", exchange="test")
    sync.on_diff(diff(20, 25))
    out = sync.on_snapshot(snapshot(10))
    assert len(out) == 1
    assert isinstance(out[0], SequenceGapDetected)
    assert out[0].reason is GapReason.STALE_SNAPSHOT
    assert not sync.synced
    assert sync.needs_snapshot


def test_crossed_book_is_a_gap() -> None:
    """A diff that leaves best bid >= best ask breaks the sync."""
    sync = synced(10)
    out = sync.on_diff(diff(11, 11, bids=[("101", "1")]))
    assert len(out) == 1
    assert isinstance(out[0], SequenceGapDetected)
    assert out[0].reason is GapReason.CROSSED


def test_diffs_follow_binances_corrected_procedure() -> None:
    """November 2025's rules: u <= the book's id is ignored; U > id + 1 is a gap; any
    other diff applies, one that overlaps the book's last updates too, not only the first
    after the snapshot."""
    sync = synced(10)
    assert len(sync.on_diff(diff(8, 12))) == 1  # straddles 11
    assert len(sync.on_diff(diff(13, 14))) == 1
    assert sync.on_diff(diff(12, 14)) == []  # u <= 14: already in the book
    applied = sync.on_diff(diff(14, 15))  # overlaps 14, brings 15: applied
    assert [e.final_update_id for e in applied if isinstance(e, DepthDiffReceived)] == [15]
    assert sync.last_update_id == 15
    assert len(sync.on_diff(diff(16, 16))) == 1  # U == id + 1: the usual case
    out = sync.on_diff(diff(18, 19))  # U > id + 1: updates 17 are missing
    assert isinstance(out[0], SequenceGapDetected)
    assert (out[0].expected_update_id, out[0].received_update_id) == (17, 18)


def test_a_snapshot_older_than_the_buffered_diffs_is_fetched_again() -> None:
    """lastUpdateId + 1 below the first buffered U: a stale_snapshot gap, a new snapshot
    asked for, and the next one that reaches the diffs syncs the book."""
    sync = BookSynchronizer("BTCUSDT", exchange="test")
    sync.on_diff(diff(20, 21))
    out = sync.on_snapshot(snapshot(15))
    assert isinstance(out[0], SequenceGapDetected)
    assert out[0].reason is GapReason.STALE_SNAPSHOT
    assert sync.needs_snapshot
    synced_now = sync.on_snapshot(snapshot(20))
    assert sync.synced
    assert [e.final_update_id for e in synced_now if isinstance(e, DepthDiffReceived)] == [21]


def test_already_stored_updates_are_applied_but_not_emitted() -> None:
    """A synchronizer resuming after update 12 keeps its book but emits only newer events."""
    sync = BookSynchronizer("BTCUSDT", exchange="test", version=7, stored_through=12)
    assert sync.on_snapshot(snapshot(10)) == []
    assert sync.on_diff(diff(11, 12, bids=[("100.2", "1")])) == []
    out = sync.on_diff(diff(13, 13))
    assert [e.version for e in out] == [8]
    top = sync.book.top()
    assert top is not None
    assert top.bid_price == D("100.2")


def test_a_restart_ahead_of_the_stored_stream_records_the_updates_never_received() -> None:
    """Resuming a stored stream: a first snapshot ahead of it is a stored RESTART gap."""
    sync = BookSynchronizer("BTCUSDT", exchange="test", version=5, stored_through=100)
    out = sync.on_snapshot(snapshot(150))
    gap, stored = out
    assert isinstance(gap, SequenceGapDetected)
    assert (gap.reason, gap.expected_update_id, gap.received_update_id) == (
        GapReason.RESTART, 101, 151,
    )  # fmt: skip
    assert (gap.version, stored.version) == (6, 7)
    assert sync.on_snapshot(snapshot(160))[0].version == 8  # only the first snapshot counts


def test_a_restart_within_the_stored_stream_records_nothing() -> None:
    """A replay or a restart whose snapshot is already covered stores no gap."""
    sync = BookSynchronizer("BTCUSDT", exchange="test", version=5, stored_through=100)
    assert sync.on_snapshot(snapshot(90)) == []
    assert sync.gaps == 0


def _gap(expected: int, received: int) -> SequenceGapDetected:
    return SequenceGapDetected(
        stream="depth-BTCUSDT", version=0, exchange_ts=0, receive_ts=0, exchange="binance",
        symbol="BTCUSDT", reason=GapReason.GAP, expected_update_id=expected,
        received_update_id=received,
    )  # fmt: skip


def _spans(events: list[Event]) -> list[tuple[str, int, int]]:
    out = []
    for e in events:
        if isinstance(e, DepthDiffReceived):
            out.append(("diff", e.first_update_id, e.final_update_id))
        elif isinstance(e, BookSnapshotTaken):
            out.append(("snapshot", e.last_update_id, e.last_update_id))
        elif isinstance(e, SequenceGapDetected):
            out.append(("gap", e.expected_update_id, e.received_update_id))
    return out


def test_a_takeover_drops_what_the_stored_stream_covers() -> None:
    """Another collector stored through 20: our 11..20 go, 21.. continue its stream."""
    mine: list[Event] = [diff(11, 15), diff(16, 20), diff(21, 22), diff(23, 25)]
    assert _spans(continue_stream(mine, 20)) == [("diff", 21, 22), ("diff", 23, 25)]


def test_a_takeover_ahead_of_the_stored_stream_records_the_jump() -> None:
    """Our snapshot at 40 after a stream stored through 20: 21..40 only in the snapshot,
    recorded as a gap (the chaos test found this hole)."""
    mine: list[Event] = [snapshot(40), diff(41, 42)]
    assert _spans(continue_stream(mine, 20)) == [
        ("gap", 21, 41), ("snapshot", 40, 40), ("diff", 41, 42),
    ]  # fmt: skip
    assert _spans(continue_stream([diff(30, 31)], 20)) == [("gap", 21, 30), ("diff", 30, 31)]


def test_a_takeover_keeps_our_gap_from_where_the_stored_stream_ends() -> None:
    """Our gap 16..29 after a stream stored through 20 is 21..29; one it fills is dropped."""
    mine: list[Event] = [_gap(16, 30), snapshot(35), diff(36, 37)]
    assert _spans(continue_stream(mine, 20)) == [
        ("gap", 21, 36), ("snapshot", 35, 35), ("diff", 36, 37),
    ]  # fmt: skip
    assert _spans(continue_stream([_gap(16, 19), diff(25, 26)], 20)) == [
        ("gap", 21, 25), ("diff", 25, 26),
    ]  # fmt: skip
