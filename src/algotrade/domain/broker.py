"""Trading core: from a signal to an order, a paper fill, and the position it changes.

The trader is long-only (spot): a BUY opens a position of a fixed quantity when flat, a
SELL closes the whole position. A signal that cannot be acted on (a SELL while flat, a BUY
while already long, no quote to fill at) still produces one order, stored as rejected
with the reason, so every signal maps to exactly one order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from algotrade.domain.events import (
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    PositionChanged,
    Side,
    SignalEmitted,
    TopOfBook,
    fast_init,
    order_id_for,
    order_stream,
    position_stream,
)

ZERO = Decimal(0)


@fast_init
@dataclass(frozen=True, slots=True)
class Position:
    """A symbol's holdings: quantity, average entry price, realised PnL and fees paid."""

    symbol: str
    quantity: Decimal = ZERO
    average_price: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    version: int = 0

    def unrealised_pnl(self, mark: Decimal | None) -> Decimal:
        """Return the PnL of the open quantity marked at ``mark`` (zero without a mark)."""
        if mark is None or not self.quantity:
            return ZERO
        return (mark - self.average_price) * self.quantity

    @classmethod
    def from_event(cls, event: PositionChanged) -> Position:
        """Rebuild a position from its last stored change."""
        return cls(
            event.symbol,
            event.quantity,
            event.average_price,
            event.realised_pnl,
            event.fees_paid,
            event.version,
        )


def place_order(signal: SignalEmitted, position: Position, quantity: Decimal) -> OrderPlaced:
    """Return the market order a signal asks for, given the current position."""
    order_id = order_id_for(signal.signal_id)
    if signal.side is Side.SELL and position.quantity > 0:
        quantity = position.quantity
    return OrderPlaced(
        stream=order_stream(order_id),
        version=1,
        exchange_ts=signal.exchange_ts,
        receive_ts=signal.receive_ts,
        order_id=order_id,
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        side=signal.side,
        quantity=quantity,
    )


def check_order(order: OrderPlaced, position: Position) -> str | None:
    """Return why the order must not be sent, or ``None`` when it may."""
    if order.quantity <= 0:
        return "order quantity must be positive"
    if order.side is Side.BUY and position.quantity > 0:
        return "already long: the position is open"
    if order.side is Side.SELL and position.quantity <= 0:
        return "no open position to close"
    return None


def reject(order: OrderPlaced, reason: str) -> OrderRejected:
    """Return the rejection of ``order`` for ``reason``."""
    return OrderRejected(
        stream=order.stream,
        version=order.version + 1,
        exchange_ts=order.exchange_ts,
        receive_ts=order.receive_ts,
        order_id=order.order_id,
        signal_id=order.signal_id,
        symbol=order.symbol,
        side=order.side,
        reason=reason,
    )


def paper_fill(
    order: OrderPlaced, quote: TopOfBook | None, fee_rate: Decimal
) -> OrderFilled | OrderRejected:
    """Fill a market order at the top of book: BUY at the best ask, SELL at the best bid."""
    if quote is None:
        return reject(order, "no quote: the order book is empty")
    price = quote.ask_price if order.side is Side.BUY else quote.bid_price
    return OrderFilled(
        stream=order.stream,
        version=order.version + 1,
        exchange_ts=order.exchange_ts,
        receive_ts=order.receive_ts,
        order_id=order.order_id,
        signal_id=order.signal_id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        price=price,
        fee=price * order.quantity * fee_rate,
    )


def apply_fill(position: Position, fill: OrderFilled) -> tuple[Position, PositionChanged]:
    """Return the position after ``fill`` and the event that records it."""
    qty, avg, realised = position.quantity, position.average_price, position.realised_pnl
    if fill.side is Side.BUY:
        new_qty = qty + fill.quantity
        avg = (avg * qty + fill.price * fill.quantity) / new_qty
    else:
        closed = min(fill.quantity, qty)
        realised += (fill.price - avg) * closed
        new_qty = qty - fill.quantity
        if new_qty <= 0:
            avg = ZERO
    new = Position(
        position.symbol,
        new_qty,
        avg,
        realised,
        position.fees_paid + fill.fee,
        position.version + 1,
    )
    event = PositionChanged(
        stream=position_stream(position.symbol),
        version=new.version,
        exchange_ts=fill.exchange_ts,
        receive_ts=fill.receive_ts,
        symbol=new.symbol,
        quantity=new.quantity,
        average_price=new.average_price,
        realised_pnl=new.realised_pnl,
        fees_paid=new.fees_paid,
        order_id=fill.order_id,
    )
    return new, event
