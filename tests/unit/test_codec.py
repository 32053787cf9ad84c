"""The stored-event envelope round-trips every event type exactly."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

from algotrade.adapters import codec, decimals
from algotrade.adapters.mongo import documents
from algotrade.domain.errors import InvalidInputError
from algotrade.domain.events import (
    DepthDiffReceived,
    Event,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    OrderUpdated,
    PositionChanged,
    SequenceGapDetected,
    SignalEmitted,
    TradeReceived,
    TradingHalted,
    TradingResumed,
)
from algotrade.domain.values import GapReason, OrderStatus, Side, TopOfBook
from tests.support.builders import D, bar, diff, snapshot

EXAMPLES = [
    diff(1, 3, [("100.10", "0.5")], [("100.20", "0")]),
    snapshot(7),
    TradeReceived(
        stream="trades-X",
        version=1,
        exchange_ts=1,
        receive_ts=2,
        exchange="b",
        symbol="X",
        trade_id=9,
        price=D("1.5"),
        quantity=D("2.25"),
        buyer_is_maker=True,
    ),
    SequenceGapDetected(
        stream="depth-X",
        version=2,
        exchange_ts=1,
        receive_ts=2,
        exchange="b",
        symbol="X",
        reason=GapReason.GAP,
        expected_update_id=5,
        received_update_id=9,
    ),
    bar("101.5", 3),
    SignalEmitted(
        stream="s",
        version=1,
        exchange_ts=1,
        receive_ts=2,
        signal_id="id",
        symbol="X",
        interval="1m",
        side=Side.SELL,
        price=D("3.1"),
        short_sma=1.25,
        long_sma=2.5,
        bar_time=0,
        strategy="sma_crossover",
        params=(("short", 5), ("long", 20)),
    ),
    OrderPlaced(
        stream="o",
        version=1,
        exchange_ts=1,
        receive_ts=2,
        order_id="o1",
        signal_id="id",
        symbol="X",
        side=Side.BUY,
        quantity=D("0.01"),
    ),
    OrderFilled(
        stream="o",
        version=2,
        exchange_ts=1,
        receive_ts=2,
        order_id="o1",
        signal_id="id",
        symbol="X",
        side=Side.BUY,
        quantity=D("0.01"),
        price=D("100.01"),
        fee=D("0.0001"),
    ),
    OrderRejected(
        stream="o",
        version=2,
        exchange_ts=1,
        receive_ts=2,
        order_id="o1",
        signal_id="id",
        symbol="X",
        side=Side.SELL,
        reason="no position",
    ),
    PositionChanged(
        stream="p",
        version=3,
        exchange_ts=1,
        receive_ts=2,
        symbol="X",
        quantity=D("0.01"),
        average_price=D("100.01"),
        realised_pnl=D("-1.5"),
        fees_paid=D("0.2"),
        order_id="o1",
    ),
    OrderPlaced(
        stream="o2",
        version=1,
        exchange_ts=1,
        receive_ts=2,
        order_id="o2",
        signal_id="id2",
        symbol="X",
        side=Side.BUY,
        quantity=D("0.2"),
        limit_price=D("29970.00"),
    ),
    OrderUpdated(
        stream="o2",
        version=2,
        exchange_ts=1,
        receive_ts=2,
        order_id="o2",
        signal_id="id2",
        symbol="X",
        side=Side.BUY,
        status=OrderStatus.PARTIALLY_FILLED,
        executed_quantity=D("0.1"),
        executed_quote=D("2997.000"),
        fees=D("0"),
        base_fees=D("0.0001"),
        last_quantity=D("0.0999"),
        last_price=D("29970.00"),
        fee=D("2.997"),
        exchange_order_id=12,
        reason="",
    ),
    PositionChanged(
        stream="p",
        version=4,
        exchange_ts=1,
        receive_ts=2,
        symbol="X",
        quantity=D("0.0999"),
        average_price=D("29970.00"),
        realised_pnl=D("0"),
        fees_paid=D("2.997"),
        order_id="o2",
        execution="0.1",
    ),
    TradingHalted(stream="control-trading", version=1, exchange_ts=1, receive_ts=2, reason="r"),
    TradingResumed(stream="control-trading", version=2, exchange_ts=1, receive_ts=2),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(event: Event) -> None:
    """Encoding then decoding gives back an equal event."""
    data = codec.encode(event)
    assert codec.decode(type(event).__name__, event.stream, event.version, data) == event


def test_depth_top_round_trips() -> None:
    """The top of book survives the trip with exact decimals."""
    event = diff(1, 1)
    event = type(event)(
        **{
            **{f: getattr(event, f) for f in event.__dataclass_fields__},
            "top": TopOfBook(D("1.10"), D("2"), D("1.20"), D("3")),
        }
    )
    back = codec.decode("DepthDiffReceived", event.stream, 0, codec.encode(event))
    assert back == event
    assert isinstance(back, DepthDiffReceived)
    assert back.top is not None
    assert str(back.top.bid_price) == "1.10"


def test_documents_stored_before_a_field_existed_read_its_default() -> None:
    """An order stored before limit orders existed (no ``limit_price``) reads as a market
    order; a missing field without a default is still malformed."""
    order = EXAMPLES[6]
    assert isinstance(order, OrderPlaced)
    old = codec.to_dict(order)
    del old["limit_price"]

    assert codec.from_dict("OrderPlaced", order.stream, 1, old) == order
    del old["quantity"]
    with pytest.raises(InvalidInputError, match="quantity"):
        codec.from_dict("OrderPlaced", order.stream, 1, old)


def test_every_event_type_has_an_example() -> None:
    """The round-trip examples cover every stored type."""
    assert {type(e).__name__ for e in EXAMPLES} == set(codec.EVENT_TYPES)


@pytest.mark.parametrize(
    ("type_", "data"),
    [("Nope", b"{}"), ("TradeReceived", b"{not json"), ("TradeReceived", b'{"price": "1"}')],
)
def test_malformed_documents_raise_invalid_input(type_: str, data: bytes) -> None:
    """Unknown types, bad JSON and missing fields are InvalidInputError, never a crash."""
    with pytest.raises(InvalidInputError):
        codec.decode(type_, "s", 1, data)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_mongo_documents_round_trip(event: Event) -> None:
    """Every event type survives the trip through its MongoDB document."""
    assert documents.from_document(documents.to_document(event, 7)) == event


def test_mongo_documents_without_a_later_field_read_its_default() -> None:
    """A MongoDB order document from before limit orders reads as a market order."""
    order = EXAMPLES[6]
    doc = documents.to_document(order, 3)
    del doc["limit_price"]

    assert documents.from_document(doc) == order
    del doc["quantity"]
    with pytest.raises(InvalidInputError, match="quantity"):
        documents.from_document(doc)


def test_depth_documents_stored_before_the_top_of_book_read_none() -> None:
    """A depth diff stored before events carried their top of book reads with ``top``
    ``None``, on the fast path as on the generic one."""
    event = EXAMPLES[0]
    assert isinstance(event, DepthDiffReceived)
    old = codec.to_dict(event)
    del old["t"]

    back = codec.from_dict("DepthDiffReceived", event.stream, 1, old)
    assert isinstance(back, DepthDiffReceived)
    assert back.top is None
    assert back.bids == event.bids


class _ReadKeys(dict[str, object]):
    """A stored document that notes which of its keys were read."""

    def __init__(self, doc: dict[str, object]) -> None:
        super().__init__(doc)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> object:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: object = None) -> object:
        self.read.add(key)
        return super().get(key, default)


@pytest.mark.parametrize("type_", ["DepthDiffReceived", "TradeReceived"])
def test_the_market_fast_paths_read_every_stored_field(type_: str) -> None:
    """Depth diffs and trades are decoded by hand-written fast paths, not the schema: a
    field added to the event (and so to its documents) must be read there too."""
    event = next(e for e in EXAMPLES if type(e).__name__ == type_)
    doc = _ReadKeys(codec.to_dict(event))
    assert codec.from_dict(type_, event.stream, event.version, doc) == event
    assert doc.read == set(doc)


@pytest.mark.parametrize(
    ("type_", "change"),
    [
        ("DepthDiffReceived", {"b": [["100.10"]]}),  # not a pair
        ("DepthDiffReceived", {"b": [["abc", "1"]]}),  # not a number
        ("DepthDiffReceived", {"a": [[100.2, "1"]]}),  # a float: inexact
        ("DepthDiffReceived", {"a": [["NaN", "1"]]}),
        ("DepthDiffReceived", {"b": "100.10"}),  # not a list
        ("DepthDiffReceived", {"t": ["1", "2", "3"]}),  # a top of book of three
        ("DepthDiffReceived", {"U": None}),
        ("TradeReceived", {"p": "Infinity"}),
        ("TradeReceived", {"q": 2.25}),
        ("TradeReceived", {"a": None}),
    ],
)
def test_malformed_market_documents_raise_invalid_input(
    type_: str, change: dict[str, object]
) -> None:
    """Stored depth diffs and trades (decoded on their own fast path) that do not fit
    their type are InvalidInputError naming the event, never a crash or an inexact price."""
    event = next(e for e in EXAMPLES if type(e).__name__ == type_)
    doc = {**codec.to_dict(event), **change}
    with pytest.raises(InvalidInputError, match=f"stored {type_} at {event.stream}@1"):
        codec.from_dict(type_, event.stream, 1, doc)


def test_stored_decimals_are_exact_and_shared() -> None:
    """Prices decode exactly, with their stored exponent, and the same text gives the
    same Decimal object (decoded once, hashed once)."""
    event = diff(1, 1, [("100.10", "0.50000000")], [("100.20", "1E+1")])
    doc = codec.to_dict(event)
    first = codec.from_dict("DepthDiffReceived", event.stream, 1, doc)
    second = codec.from_dict("DepthDiffReceived", event.stream, 2, orjson.loads(orjson.dumps(doc)))
    assert isinstance(first, DepthDiffReceived)
    assert isinstance(second, DepthDiffReceived)
    assert [str(x) for level in first.bids + first.asks for x in level] == [
        "100.10", "0.50000000", "100.20", "1E+1"
    ]  # fmt: skip
    assert first.bids[0][0] is second.bids[0][0]
    assert first.asks[0][1] is second.asks[0][1]


@pytest.mark.parametrize(
    "change",
    [
        {"bids": [[100.1, "0.5"]]},
        {"asks": [["NaN", "0"]]},
        {"best_bid": ["1", 2.0], "best_ask": ["3", "4"]},
    ],
)
def test_malformed_mongo_depth_documents_raise_invalid_input(change: dict[str, object]) -> None:
    """A MongoDB depth document with a float or non-finite price is malformed, not read
    as an inexact or meaningless number."""
    event = EXAMPLES[0]
    doc = {**documents.to_document(event, 3), **change}
    with pytest.raises(InvalidInputError, match="malformed"):
        documents.from_document(doc)


def test_the_interned_decimals_hold_little_memory() -> None:
    """Real quantities rarely repeat: 200,000 distinct texts (a few hours of a busy symbol)
    leave the table of interned decimals holding under 16 MiB, and values stay exact."""
    decimals.forget()
    tracemalloc.start()
    try:
        for i in range(200_000):
            text = f"{i + 1}.50"
            assert str(decimals.decimal_of(text)) == text
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0 < len(decimals._DECIMALS) <= decimals.MAX_INTERNED
    assert held < 16 * 2**20, f"{held / 2**20:.1f} MiB held"
