"""The stored-event envelope round-trips every event type exactly."""

from __future__ import annotations

import pytest

from algotrade.adapters import codec
from algotrade.domain.errors import InvalidInputError
from algotrade.domain.events import (
    DepthDiffReceived,
    Event,
    GapReason,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    PositionChanged,
    SequenceGapDetected,
    Side,
    SignalEmitted,
    TopOfBook,
    TradeReceived,
)
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
