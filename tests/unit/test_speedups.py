"""The compiled hot path (``algotrade.adapters.speedups``) against the Python code it replaces.

Every case runs through both: the compiled frame scanner must give exactly the event the
Python parser gives, or step aside (``None``) for anything it does not read, bad input
included; the compiled book must answer every question as :class:`OrderBook` does after
every change; the compiled copier must copy as :func:`applied` does.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algotrade.adapters import decimals, speedups
from algotrade.adapters.binance.messages import parse_depth_snapshot, parse_frame_python
from algotrade.adapters.replay import ReplayFeed
from algotrade.domain.book import Book, BookSynchronizer, OrderBook
from algotrade.domain.errors import InvalidInputError
from algotrade.domain.events import BookSnapshotTaken, DepthDiffReceived, Event, applied
from algotrade.domain.values import PriceLevel, TopOfBook

if os.environ.get("ALGOTRADE_SPEEDUPS", "").strip().lower() in {"0", "no", "false", "off"}:
    pytest.skip("ALGOTRADE_SPEEDUPS=0: the pure-Python code only", allow_module_level=True)
try:
    from algotrade.adapters import _speedups as compiled_module
except ImportError as e:  # no C compiler at install: say so, never skip quietly
    pytest.fail(
        f"the compiled module is not built ({e}): the tests need a C compiler;"
        " install gcc or clang and run `pip install -e .` again",
        pytrace=False,
    )

scan = compiled_module.scan_depth
SOURCE = Path(compiled_module.__file__).with_name("_speedups.c")
SOURCES = [SOURCE.with_name(name) for name in ("_speedups.c", "_history.c", "_history.h")]


def test_the_compiled_module_is_in_use() -> None:
    """Built by ``pip install -e .`` (the tests need a C compiler) and newer than its source."""
    assert speedups.COMPILED
    assert speedups.scan_depth is scan
    built = Path(compiled_module.__file__).stat().st_mtime
    for source in SOURCES:
        if source.is_file():  # a source checkout: a stale build would test old code
            assert built >= source.stat().st_mtime, (
                f"the compiled module is older than {source.name}: run `pip install -e .` again"
            )


def test_the_environment_turns_it_off() -> None:
    """``ALGOTRADE_SPEEDUPS=0``: the pure-Python code, with the same events."""
    code = (
        "from algotrade.adapters import speedups\n"
        "from algotrade.adapters.binance.messages import parse_frame\n"
        f"e = parse_frame({frame()!r}, 5)\n"
        "print(speedups.COMPILED, speedups.compiled_book is None, e.bids[0][0])"
    )
    env = {**os.environ, "ALGOTRADE_SPEEDUPS": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True", "57000.01"]


def test_a_malformed_setting_is_said_and_changes_nothing() -> None:
    """``ALGOTRADE_SPEEDUPS=maybe``: a warning naming the value; the compiled module stays."""
    code = "from algotrade.adapters import speedups; print(speedups.COMPILED)"
    env = {**os.environ, "ALGOTRADE_SPEEDUPS": "maybe"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True"]
    assert "ALGOTRADE_SPEEDUPS='maybe' is neither 0 nor 1" in out.stderr


# --- the frame scanner ------------------------------------------------------------------


def frame(
    bids: Any = (("57000.01", "1.50000000"),),
    asks: Any = (("57000.02", "0.00000000"),),
    **changes: Any,
) -> bytes:
    """Return a depth frame as Binance writes it, with ``changes`` to its data."""
    data = {"e": "depthUpdate", "E": 1_700_000_000_123, "s": "BTCUSDT", "U": 101, "u": 105,
            "b": [list(level) for level in bids], "a": [list(level) for level in asks]}  # fmt: skip
    data.update(changes)
    return json.dumps(
        {"stream": "btcusdt@depth@100ms", "data": data}, separators=(",", ":")
    ).encode()


def exact(event: object) -> object:
    """An event's fields with each decimal as its text: equal only if spelled the same."""
    if not isinstance(event, DepthDiffReceived):
        return event
    return (
        type(event),
        *(getattr(event, name) for name in ("stream", "version", "exchange_ts", "receive_ts")),
        *(getattr(event, name) for name in ("exchange", "symbol", "first_update_id")),
        event.final_update_id,
        tuple((str(p), str(q), type(p), type(q)) for p, q in event.bids),
        tuple((str(p), str(q), type(p), type(q)) for p, q in event.asks),
        event.top,
    )


def check_same(text: str | bytes) -> DepthDiffReceived | None:
    """Scan ``text``; the event must be the Python parser's, or ``None``. Return it."""
    try:
        expected: object = parse_frame_python(text, 7)
    except InvalidInputError:
        expected = InvalidInputError
    got = scan(text, 7)
    if got is not None:
        assert expected is not InvalidInputError, f"the scanner took a bad frame: {text!r}"
        assert exact(got) == exact(expected)
    return got


def test_binance_frames_take_the_fast_path() -> None:
    """Binance's spelling is scanned, as bytes and as text, into the Python parser's event."""
    spaced = json.dumps(json.loads(frame()), indent=2)  # any JSON whitespace
    for text in (frame(), frame().decode(), frame(bids=(), asks=()), spaced):
        assert check_same(text) is not None
    many = frame(bids=[(f"{50000 + i}.00", "1.0") for i in range(1000)])
    assert check_same(many) is not None  # more levels than a chunk of lookups


def test_recorded_frames_take_the_fast_path(recording: Path) -> None:
    """Every depth frame of the real recording scans to the Python parser's event."""
    count = 0
    with recording.open(encoding="utf-8") as lines:
        for line in lines:
            _, _, body = line.partition(": ")
            if body.startswith('{"stream":"') and "@depth" in body[:40]:
                assert check_same(body.strip()) is not None, body[:200]
                count += 1
    assert count > 2000


@pytest.mark.parametrize(
    "text",
    [
        # other spellings: valid, left to the Python parser
        frame().replace(b'"stream":"btcusdt@depth@100ms",', b"")[:-1]
        + b',"stream":"btcusdt@depth@100ms"}',
        frame(extra=1),
        frame(s="BTC\u00e9USDT"),
        frame().replace(b"BTCUSDT", b"BTC\\u0055SDT"),
        frame(E=1.7e12),
        frame(U=-1, u=5),
        frame(U=10**20, u=10**20),
        frame(bids=[("\u0663", "1")]),
        # bad input: the Python parser reports it
        frame(U=9, u=5),
        frame(e="trade"),
        frame(s=""),
        frame(bids=[("NaN", "1")]),
        frame(bids=[("abc", "1")]),
        frame(bids=[("", "1")]),
        frame(bids=[(1.5, "1")]),
        frame(bids=[("1", "2", "3")]),
        frame(bids=[["1"]]),
        frame(b="12"),
        frame(E=True),
        frame().replace(b'"U":101', b'"U":0101'),
        frame().replace(b'"u":105', b'"u":105,"u":106'),
        frame().replace(b"@depth@100ms", b"@aggTrade"),
        frame().replace(b"btcusdt@depth@100ms", b"depth"),
        frame() + b"x",
        frame()[:-1],
        b"",
        b"[]",
        b"\xff",
    ],
)
def test_other_spellings_and_bad_frames_go_the_slow_way(text: bytes) -> None:
    """Anything but Binance's own spelling is left to the Python parser (bad frames too)."""
    assert check_same(text) is None


@pytest.mark.parametrize("text", ["1e5", " 1.5", "1_000", "-0", "1" * 30, "0." + "0" * 40])
def test_a_price_is_whatever_decimal_of_makes_of_its_text(text: str) -> None:
    """Texts become decimals in one place (``decimal_of``), whichever path reads them."""
    assert check_same(frame(bids=[(text, "1")])) is not None


def test_every_cut_frame_goes_the_slow_way() -> None:
    """A frame cut anywhere is never half-read."""
    whole = frame(bids=[("57000.01", "1.5"), ("56999.99", "2")])
    for end in range(len(whole)):
        assert check_same(whole[:end]) is None


texts = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=8).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["0", "0.00000000", "1E+2", "-1", "+1", " 1", "1_0", "", "٣", "1" * 25]),
    st.text(max_size=6),
)
levels = st.lists(st.lists(texts, min_size=2, max_size=2), max_size=5)
ids = st.one_of(st.integers(min_value=0, max_value=10**19), st.integers(), st.booleans())


@settings(max_examples=300)
@given(
    bids=levels,
    asks=levels,
    first=ids,
    final=ids,
    symbol=st.sampled_from(["BTCUSDT", "ETHUSDT", "", "é"]),
    indent=st.booleans(),
    drop=st.sampled_from([None, "e", "E", "s", "U", "u", "b", "a"]),
)
def test_any_frame_scans_to_the_python_parsers_event_or_steps_aside(
    bids: list[list[str]],
    asks: list[list[str]],
    first: int,
    final: int,
    symbol: str,
    indent: bool,
    drop: str | None,
) -> None:
    """Generated frames, good and bad, in Binance's spelling or another."""
    data: dict[str, Any] = {"e": "depthUpdate", "E": 1_700_000_000_000, "s": symbol,
                            "U": first, "u": final, "b": bids, "a": asks}  # fmt: skip
    if drop is not None:
        del data[drop]
    body = {"stream": "btcusdt@depth", "data": data}
    text = json.dumps(body, indent=2) if indent else json.dumps(body, separators=(",", ":"))
    check_same(text)
    check_same(text.encode())


def test_the_cache_of_decimals_empties_when_full_and_stays_right() -> None:
    """More distinct texts than the cache holds (65,536): every event stays exact."""
    decimals.forget()
    for start in range(0, 70_000, 1_000):
        quantities = [(f"{50000 + i}.01", f"{start + i}.5") for i in range(1_000)]
        got = check_same(frame(bids=quantities, asks=()))
        assert got is not None
        assert str(got.bids[-1][1]) == f"{start + 999}.5"
    decimals.forget()


def test_scanning_keeps_no_reference() -> None:
    """Events scanned and dropped, good or bad, leave each decimal's count as it was."""
    good = frame(bids=[("57000.01", "1.5")], asks=[("57000.02", "2.5")])
    bad = frame(bids=[("57000.01", "1.5"), ("57000.03", "NaN")])
    scan(good, 1)  # cached from here on
    price = decimals.decimal_of("57000.01")
    before = sys.getrefcount(price)
    for _ in range(1_000):
        scan(good, 1)
        assert scan(bad, 1) is None
    gc.collect()
    assert sys.getrefcount(price) == before


# --- the book ---------------------------------------------------------------------------

prices = st.one_of(
    st.integers(min_value=1, max_value=30).map(Decimal),
    st.sampled_from([Decimal("5.0"), Decimal("5.00"), Decimal("12.5"), Decimal("1E+1")]),
)
quantities = st.sampled_from([Decimal(0), Decimal("0.000"), Decimal(1), Decimal("2.5")])
sides = st.lists(st.tuples(prices, quantities), max_size=12)
operations = st.lists(
    st.tuples(st.sampled_from(["apply", "apply", "apply", "load", "clear"]), sides, sides),
    max_size=30,
)


def answers(book: Book) -> object:
    """Everything a book says, with decimals as their text."""

    def text(level: PriceLevel | None) -> object:
        return None if level is None else (str(level[0]), str(level[1]))

    def all_of(side: Iterable[PriceLevel]) -> object:
        return [text(level) for level in side]

    top = book.top()
    bids, asks = book.levels()
    return (
        text(book.best_bid()),
        text(book.best_ask()),
        None if top is None else (type(top), *map(str, (top.bid_price, top.bid_qty))),
        None if top is None else (str(top.ask_price), str(top.ask_qty)),
        book.is_crossed(),
        all_of(bids),
        all_of(asks),
        len(book),
    )


@settings(max_examples=300)
@given(operations=operations, window=st.integers(min_value=1, max_value=4))
def test_the_compiled_book_answers_as_the_python_book(
    operations: list[tuple[str, list[PriceLevel], list[PriceLevel]]], window: int
) -> None:
    """After every change (small windows: the edge, the cut and the refill all happen)."""
    python, fast = OrderBook(window=window), compiled_module.Book(window=window)
    for operation, bids, asks in operations:
        for book in (python, fast):
            if operation == "clear":
                book.clear()
            else:
                getattr(book, operation)(bids, asks)
        assert answers(fast) == answers(python)


def test_the_compiled_book_takes_any_level_spelling_and_rejects_what_python_rejects() -> None:
    """Lists and generators as Python takes them; a level that is no pair is an error."""
    lists: Any = [[Decimal(2), Decimal(1)]]
    said = []
    for book in (OrderBook(), compiled_module.Book()):
        book.load(iter(lists), [(Decimal(3), Decimal(1))])
        book.apply(lists, ())
        said.append(answers(book))
        assert book.top() == TopOfBook(Decimal(2), Decimal(1), Decimal(3), Decimal(1))
        with pytest.raises(ValueError, match="expected 2"):
            book.apply([(Decimal(1),)], ())  # type: ignore[list-item]
        with pytest.raises(ValueError, match="expected 2"):
            book.load([(Decimal(1), Decimal(2), Decimal(3))], ())  # type: ignore[list-item]
        with pytest.raises(TypeError):
            book.apply(5, ())  # type: ignore[arg-type]
    assert said[0] == said[1]
    with pytest.raises(ValueError, match="window must be at least 1"):
        compiled_module.Book(window=0)


def test_the_compiled_book_lets_its_prices_go() -> None:
    """A book cleared or dropped holds no reference to its decimals."""
    price, qty = Decimal("123.456"), Decimal("7.89")
    before = sys.getrefcount(price), sys.getrefcount(qty)
    book = compiled_module.Book(window=1)
    book.load([(price, qty), (Decimal(1), qty), (Decimal(2), qty)], [(Decimal(999), qty)])
    book.apply([(price, Decimal(0))], ())
    book.apply([(price, qty)], ())
    book.clear()
    book.load([(price, qty)], [])
    del book
    gc.collect()
    assert (sys.getrefcount(price), sys.getrefcount(qty)) == before


# --- the synchroniser, end to end -------------------------------------------------------


def replayed(recording: Path, *, fast: bool) -> list[Event]:
    """Return what one synchroniser per symbol stores from the recording."""
    syncs: dict[str, BookSynchronizer] = {}
    out: list[Event] = []
    for event in ReplayFeed(recording).events():
        if not isinstance(event, DepthDiffReceived | BookSnapshotTaken):
            continue
        sync = syncs.get(event.symbol)
        if sync is None:
            make = speedups.synchronizer if fast else BookSynchronizer
            sync = syncs[event.symbol] = make(event.symbol, exchange="binance")
        if isinstance(event, DepthDiffReceived):
            out.extend(sync.on_diff(event))
        else:
            out.extend(sync.on_snapshot(event))
    return out


def test_the_recording_stores_the_same_events_both_ways(recording: Path) -> None:
    """Replayed through the compiled book and copier, or the Python ones: the same events."""
    fast, python = replayed(recording, fast=True), replayed(recording, fast=False)
    assert len(fast) > 2000
    assert [exact(e) for e in fast] == [exact(e) for e in python]
    assert [e.top for e in fast if isinstance(e, DepthDiffReceived)] == [
        e.top for e in python if isinstance(e, DepthDiffReceived)
    ]


def test_applied_copies_as_python_does() -> None:
    """The compiled copier: the same fields, version and top replaced; the original kept."""
    event = scan(frame(), 3)
    assert isinstance(event, DepthDiffReceived)
    top = TopOfBook(Decimal(1), Decimal(2), Decimal(3), Decimal(4))
    copied = compiled_module.applied(event, 9, top)
    assert copied == applied(event, 9, top)
    assert (copied.version, copied.top, event.version, event.top) == (9, top, 0, None)
    with pytest.raises(TypeError):
        compiled_module.applied(top, 9, top)  # type: ignore[arg-type]


def test_a_snapshot_still_parses_the_python_way() -> None:
    """REST snapshots are not scanned: the synchroniser loads them into the compiled book."""
    sync = speedups.synchronizer("BTCUSDT", exchange="binance")
    body = b'{"lastUpdateId":100,"bids":[["57000.00","1"]],"asks":[["57000.05","2"]]}'
    sync.on_snapshot(parse_depth_snapshot("BTCUSDT", body, 1))
    event = scan(frame(), 2)
    assert event is not None
    (stored,) = sync.on_diff(event)
    assert isinstance(stored, DepthDiffReceived)
    assert stored.top == TopOfBook(
        Decimal("57000.01"), Decimal("1.5"), Decimal("57000.05"), Decimal("2")
    )


class Meddling(Decimal):
    """A price whose comparisons empty the book being changed (code run mid-change)."""

    victim: Any = None

    def meddle(self) -> None:
        book, Meddling.victim = Meddling.victim, None
        if book is not None:
            book.clear()

    def __lt__(self, other: Any) -> bool:
        self.meddle()
        return Decimal.__lt__(self, other)

    def __ge__(self, other: Any) -> bool:
        self.meddle()
        return Decimal.__ge__(self, other)

    __hash__ = Decimal.__hash__


@pytest.mark.parametrize("window", [1, 2, 48])
def test_a_book_changed_during_a_comparison_is_never_unsafe(window: int) -> None:
    """The compiled book compares prices as Python objects: code run by a comparison that
    changes the book mid-change is refused (or harmless), never memory unsafe."""
    for _ in range(50):
        book = compiled_module.Book(window=window)
        book.load([(Decimal(p), Decimal(1)) for p in range(1, 20)], [(Decimal(30), Decimal(1))])
        Meddling.victim = book
        with contextlib.suppress(RuntimeError):
            book.apply([(Meddling("5.5"), Decimal(1)), (Decimal(3), Decimal(0))], ())
        Meddling.victim = book
        with contextlib.suppress(RuntimeError):
            book.levels()
        book.apply([(Decimal(7), Decimal(2))], [])
        assert book.best_bid() is not None
