"""Exchange order reports, position sizing and the guards before an order is sent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from algotrade.domain.broker import (
    ExecutionReport,
    Position,
    Sizing,
    SizingKind,
    apply_execution,
    check_order,
    order_update,
    paper_fill,
    place_order,
)
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import OrderFilled, OrderRejected, OrderUpdated
from algotrade.domain.values import OrderStatus, Side, TopOfBook
from tests.unit.test_broker import signal

D = Decimal


def report(status: OrderStatus, executed: str, quote: str, base_fees: str = "0") -> ExecutionReport:
    """Return a cumulative report of order ``s1``."""
    return ExecutionReport("s1", 77, "BTCUSDT", status, D(executed), D(quote), D(0),
                           D(base_fees), 10)  # fmt: skip


def test_partial_fills_change_the_position_by_what_each_report_added() -> None:
    """Two cumulative reports: each update carries the quantity and average price added
    since the previous one, net of the commission taken in the base asset."""
    placed = place_order(signal(Side.BUY), Position("BTCUSDT"), D("1"))
    first = order_update(
        placed, placed, report(OrderStatus.PARTIALLY_FILLED, "0.4", "40", "0.0004"), 1
    )
    assert first is not None
    second = order_update(placed, first, report(OrderStatus.FILLED, "1", "106", "0.001"), 2)
    assert second is not None

    assert (first.version, first.last_quantity, first.last_price) == (2, D("0.3996"), D(100))
    assert (second.version, second.last_quantity, second.last_price) == (3, D("0.5994"), D(110))
    assert second.fee == D("0.0006") * D(110)
    position = Position("BTCUSDT")
    for update in (first, second):
        executed = apply_execution(position, update)
        assert executed is not None
        position = executed[0]
    assert position.quantity == D("0.999")
    assert position.fees_paid == D("0.0004") * 100 + D("0.0006") * 110


def test_duplicate_stale_and_late_reports_change_nothing() -> None:
    """The same report twice, an older report, and any report after a final one are None."""
    placed = place_order(signal(Side.BUY), Position("BTCUSDT"), D("1"))
    partial = order_update(placed, placed, report(OrderStatus.PARTIALLY_FILLED, "0.4", "40"), 1)
    assert partial is not None
    filled = order_update(placed, partial, report(OrderStatus.FILLED, "1", "100"), 2)
    assert filled is not None

    assert (
        order_update(placed, partial, report(OrderStatus.PARTIALLY_FILLED, "0.4", "40"), 3) is None
    )
    assert order_update(placed, partial, report(OrderStatus.NEW, "0", "0"), 3) is None
    assert order_update(placed, filled, report(OrderStatus.CANCELED, "1", "100"), 3) is None


def test_an_accepted_order_is_stored_once_with_nothing_executed() -> None:
    """A NEW report stores an update that moves no position."""
    placed = place_order(signal(Side.BUY), Position("BTCUSDT"), D("1"), limit_price=D(99))
    new = order_update(placed, placed, report(OrderStatus.NEW, "0", "0"), 1)

    assert new is not None
    assert new.status is OrderStatus.NEW
    assert apply_execution(Position("BTCUSDT"), new) is None
    assert order_update(placed, new, report(OrderStatus.NEW, "0", "0"), 2) is None


@pytest.mark.parametrize(
    ("sizing", "free", "expected"),
    [
        (Sizing(SizingKind.QUANTITY, D("0.01")), None, D("0.01")),
        (Sizing(SizingKind.QUOTE, D("100")), None, D("0.33333333")),
        (Sizing(SizingKind.FRACTION, D("0.5")), D("600"), D("1")),
        (Sizing(SizingKind.FRACTION, D("0.5")), None, "the gateway reports no balance"),
    ],
)
def test_sizing(sizing: Sizing, free: Decimal | None, expected: Decimal | str) -> None:
    """Quantity, quote amount and balance fraction size a BUY at the signal's price."""
    price = D(300)
    got = sizing.quantity(price, free)
    if isinstance(expected, str):
        assert isinstance(got, str)
        assert got.startswith(expected)
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("kind", "value"), [(SizingKind.QUANTITY, "0"), (SizingKind.FRACTION, "1.5")]
)
def test_impossible_sizing_is_refused(kind: SizingKind, value: str) -> None:
    """A non-positive size or a fraction above one is a configuration error."""
    with pytest.raises(ConfigurationError, match="sizing must be"):
        Sizing(kind, D(value))


def test_the_maximum_position_guard_names_the_limit() -> None:
    """A BUY that would hold more than the maximum position is refused with both figures."""
    order = place_order(signal(Side.BUY), Position("BTCUSDT"), D("0.5"))

    assert check_order(order, Position("BTCUSDT"), max_position=D("0.5")) is None
    assert check_order(order, Position("BTCUSDT"), max_position=D("0.4")) == (
        "maximum position 0.4 would be exceeded (0 held + 0.5)"
    )


def test_paper_limit_orders_fill_only_when_marketable() -> None:
    """A paper limit BUY fills at the ask when the ask is within its limit, else rejects."""
    quote = TopOfBook(D(99), D(1), D(101), D(1))
    position = Position("BTCUSDT")
    marketable = place_order(signal(Side.BUY), position, D(1), limit_price=D(102))
    resting = place_order(signal(Side.BUY), position, D(1), limit_price=D(100))

    filled = paper_fill(marketable, quote, D(0))
    rejected = paper_fill(resting, quote, D(0))

    assert isinstance(filled, OrderFilled)
    assert filled.price == D(101)
    assert isinstance(rejected, OrderRejected)
    assert "not marketable" in rejected.reason


def test_an_update_s_id_is_its_order_status_and_executed_quantity() -> None:
    """The same exchange report from REST and from the user stream has one id."""
    placed = place_order(signal(Side.BUY), Position("BTCUSDT"), D("1"))
    a = order_update(placed, placed, report(OrderStatus.FILLED, "1", "100"), 1)
    b = order_update(placed, placed, report(OrderStatus.FILLED, "1", "100"), 99)

    assert isinstance(a, OrderUpdated)
    assert b is not None
    assert a.id == b.id == "s1:FILLED:1"


def test_a_position_of_dust_counts_as_flat() -> None:
    """At most ``dust`` held: a BUY may open, a SELL has nothing to close (and says why)."""
    dusty = Position("BTCUSDT", quantity=D("0.000006"))
    buy = place_order(signal(Side.BUY), dusty, D("0.01"))
    sell = place_order(signal(Side.SELL), dusty, D("0.01"))

    assert check_order(buy, dusty, dust=D("0.00001")) is None
    assert check_order(sell, dusty, dust=D("0.00001")) == (
        "no open position to close (only 0.000006 of dust)"
    )
    assert check_order(buy, dusty) == "already long: the position is open"
