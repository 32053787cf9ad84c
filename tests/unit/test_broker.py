"""Paper trading: fills at the top of book, fees, position and PnL, rejections with reasons."""

from __future__ import annotations

from decimal import Decimal

from algotrade.domain.broker import Position, apply_fill, check_order, paper_fill, place_order
from algotrade.domain.events import OrderFilled, OrderRejected, SignalEmitted
from algotrade.domain.values import Side, TopOfBook
from tests.support.builders import D

QUOTE = TopOfBook(D(100), D(1), D(101), D(2))
FEE = Decimal("0.001")


def signal(side: Side, sid: str = "s1") -> SignalEmitted:
    """Return a signal on BTCUSDT."""
    return SignalEmitted(
        stream="signals",
        version=1,
        exchange_ts=5,
        receive_ts=6,
        signal_id=sid,
        symbol="BTCUSDT",
        interval="1m",
        side=side,
        price=D(100),
        short_sma=1.0,
        long_sma=2.0,
        bar_time=0,
        strategy="sma_crossover",
    )


def test_buy_fills_at_ask_and_sell_at_bid_with_fees() -> None:
    """A round trip realises (bid - ask) * qty and pays the fee on both notionals."""
    flat = Position("BTCUSDT")
    buy = place_order(signal(Side.BUY), flat, D("0.5"))
    assert check_order(buy, flat) is None
    fill = paper_fill(buy, QUOTE, FEE)
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.fee) == (D(101), D("0.0505"))
    long, changed = apply_fill(flat, fill)
    assert (long.quantity, long.average_price, changed.version) == (D("0.5"), D(101), 1)
    assert long.unrealised_pnl(D(103)) == D(1)

    sell = place_order(signal(Side.SELL, "s2"), long, D("0.5"))
    assert sell.quantity == D("0.5")
    fill = paper_fill(sell, QUOTE, FEE)
    assert isinstance(fill, OrderFilled)
    assert fill.price == D(100)
    flat_again, _ = apply_fill(long, fill)
    assert flat_again.quantity == 0
    assert flat_again.realised_pnl == D("-0.5")
    assert flat_again.fees_paid == D("0.0505") + D("0.0500")


def test_order_id_derives_from_signal() -> None:
    """The same signal always yields the same order id; another signal another id."""
    flat = Position("BTCUSDT")
    a = place_order(signal(Side.BUY, "x"), flat, D(1))
    b = place_order(signal(Side.BUY, "x"), flat, D(1))
    c = place_order(signal(Side.BUY, "y"), flat, D(1))
    assert a.order_id == b.order_id != c.order_id


def test_sell_while_flat_and_buy_while_long_are_rejected() -> None:
    """Long-only: nothing to close when flat, nothing to open when already long."""
    flat = Position("BTCUSDT")
    assert check_order(place_order(signal(Side.SELL), flat, D(1)), flat) == (
        "no open position to close"
    )
    long = Position("BTCUSDT", quantity=D(1), average_price=D(100))
    assert check_order(place_order(signal(Side.BUY), long, D(1)), long) == (
        "already long: the position is open"
    )


def test_no_quote_rejects() -> None:
    """Without a book there is no price to fill at."""
    order = place_order(signal(Side.BUY), Position("BTCUSDT"), D(1))
    outcome = paper_fill(order, None, FEE)
    assert isinstance(outcome, OrderRejected)
    assert "no quote" in outcome.reason
