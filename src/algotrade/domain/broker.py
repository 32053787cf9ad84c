"""Trading core: from a signal to an order, a paper fill, and the position it changes.

The trader is long-only (spot): a BUY opens a position when flat, sized by a
:class:`Sizing` (a fixed quantity, a quote amount, or a fraction of the free quote
balance), a SELL closes the whole position. A signal that cannot be acted on (a SELL while
flat, a BUY while already long or beyond the maximum position, no quote to fill at, the
kill switch set) still produces one order, stored as rejected with the reason, so every
signal maps to exactly one order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import (
    Event,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    OrderUpdated,
    PositionChanged,
    SignalEmitted,
    order_final,
    order_id_for,
)
from algotrade.domain.initialisers import fast_init
from algotrade.domain.streams import order_stream, position_stream
from algotrade.domain.values import OrderStatus, Side, TopOfBook

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


class SizingKind(StrEnum):
    """How a BUY's quantity is chosen."""

    QUANTITY = "quantity"
    """A fixed base quantity (``0.01`` BTC)."""
    QUOTE = "quote"
    """A fixed quote amount (``100`` USDT), divided by the price."""
    FRACTION = "fraction"
    """A fraction (0, 1] of the free quote balance, divided by the price."""


#: The option that sets each kind (what a bad value's error names).
_OPTION = {
    SizingKind.QUANTITY: "quantity",
    SizingKind.QUOTE: "quote_amount",
    SizingKind.FRACTION: "balance_fraction",
}


@dataclass(frozen=True, slots=True)
class Sizing:
    """Position sizing of a BUY. SELLs always close the whole position."""

    kind: SizingKind = SizingKind.QUANTITY
    value: Decimal = Decimal("0.01")

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ConfigurationError(
                _OPTION[self.kind], f"sizing must be positive, got {self.value}"
            )
        if self.kind is SizingKind.FRACTION and self.value > 1:
            raise ConfigurationError(
                _OPTION[self.kind], f"sizing must be at most 1, got {self.value}"
            )

    def quantity(self, price: Decimal, free_quote: Decimal | None) -> Decimal | str:
        """Return the base quantity to buy at ``price``, or why none can be sized.

        Quantities from quote amounts are cut to 8 decimals (Binance's precision); the
        exchange rules round them further to the lot step.
        """
        if self.kind is SizingKind.QUANTITY:
            return self.value
        if price <= 0:
            return "no price to size the order with"
        amount = self.value
        if self.kind is SizingKind.FRACTION:
            if free_quote is None:
                return "the gateway reports no balance to size a fraction of"
            amount = free_quote * self.value
        return (amount / price).quantize(Decimal("1e-8"), rounding=ROUND_DOWN)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """How a strategy wants the order of its decision sized and placed; what it leaves
    ``None`` is the trader's settings (``--quantity``, ``--quote-amount``,
    ``--balance-fraction``, ``--limit-offset-bps``) and, in a backtest, all the cash at
    market.

    ``sizing`` sizes a BUY (a SELL closes the position): a base quantity, a quote amount,
    or a fraction of the free quote balance (``Sizing(SizingKind.FRACTION, 1)``: all of
    it). ``limit_offset_bps``: a limit order at the signal's price moved that many basis
    points towards the order's side (0: at the price), instead of a market order.
    """

    sizing: Sizing | None = None
    limit_offset_bps: Decimal | None = None

    def __post_init__(self) -> None:
        offset = self.limit_offset_bps
        if offset is not None and (not offset.is_finite() or offset < 0 or offset >= 10_000):
            raise ConfigurationError("limit_offset_bps", f"must be in [0, 10000), got {offset}")


def intent_of(signal: SignalEmitted) -> OrderIntent:
    """Return the order intent a signal carries (none: the trader's settings)."""
    sizing = None
    if signal.size_kind and signal.size is not None:
        sizing = Sizing(SizingKind(signal.size_kind), signal.size)
    return OrderIntent(sizing, signal.limit_offset_bps)


def limit_price(price: Decimal, side: Side, offset_bps: Decimal | None) -> Decimal | None:
    """Return the limit price ``offset_bps`` basis points from ``price`` towards ``side``
    (a BUY below, a SELL above), or ``None`` for a market order."""
    if offset_bps is None:
        return None
    move = price * offset_bps / 10_000
    return price - move if side is Side.BUY else price + move


def place_order(
    signal: SignalEmitted,
    position: Position,
    quantity: Decimal,
    *,
    limit_price: Decimal | None = None,
) -> OrderPlaced:
    """Return the order a signal asks for, given the current position: a market order, or
    a limit order at ``limit_price``. A SELL is sized to the whole position."""
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
        limit_price=limit_price,
    )


def check_order(
    order: OrderPlaced,
    position: Position,
    *,
    max_position: Decimal | None = None,
    dust: Decimal = ZERO,
) -> str | None:
    """Return why the order must not be sent, or ``None`` when it may.

    ``max_position`` caps the base quantity held after a BUY. A position of at most ``dust``
    (what the exchange's lot step leaves after a SELL) counts as flat.
    """
    if order.side is Side.BUY and position.quantity > dust:
        return "already long: the position is open"
    if order.side is Side.SELL and position.quantity <= dust:
        if position.quantity > 0:
            return f"no open position to close (only {position.quantity} of dust)"
        return "no open position to close"
    if order.quantity <= 0:
        return "order quantity must be positive"
    if (
        order.side is Side.BUY
        and max_position is not None
        and position.quantity + order.quantity > max_position
    ):
        return (
            f"maximum position {max_position} would be exceeded "
            f"({position.quantity} held + {order.quantity})"
        )
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
    """Fill an order at the top of book: BUY at the best ask, SELL at the best bid.

    A limit order fills there only if its limit allows that price; otherwise it is
    rejected (the paper broker fills at once or not at all, it keeps no resting orders).
    """
    if quote is None:
        return reject(order, "no quote: the order book is empty")
    price = quote.ask_price if order.side is Side.BUY else quote.bid_price
    limit = order.limit_price
    if limit is not None and (price > limit if order.side is Side.BUY else price < limit):
        return reject(order, f"limit {limit} not marketable at {price} (paper fills at once)")
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
    return _apply(position, fill, fill.side, fill.quantity, fill.price, fill.fee, "")


def apply_execution(
    position: Position, update: OrderUpdated
) -> tuple[Position, PositionChanged] | None:
    """Return the position after what an exchange report executed, and the event that
    records it; ``None`` when the report executed nothing."""
    if update.last_quantity <= 0:
        return None
    execution = f"{update.executed_quantity}"
    return _apply(
        position,
        update,
        update.side,
        update.last_quantity,
        update.last_price,
        update.fee,
        execution,
    )


def _apply(
    position: Position,
    cause: OrderFilled | OrderUpdated,
    side: Side,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
    execution: str,
) -> tuple[Position, PositionChanged]:
    qty, avg, realised = position.quantity, position.average_price, position.realised_pnl
    if side is Side.BUY:
        new_qty = qty + quantity
        avg = (avg * qty + price * quantity) / new_qty
    else:
        closed = min(quantity, qty)
        realised += (price - avg) * closed
        new_qty = qty - quantity
        if new_qty <= 0:
            avg = ZERO
    new = Position(
        position.symbol,
        new_qty,
        avg,
        realised,
        position.fees_paid + fee,
        position.version + 1,
    )
    event = PositionChanged(
        stream=position_stream(position.symbol),
        version=new.version,
        exchange_ts=cause.exchange_ts,
        receive_ts=cause.receive_ts,
        symbol=new.symbol,
        quantity=new.quantity,
        average_price=new.average_price,
        realised_pnl=new.realised_pnl,
        fees_paid=new.fees_paid,
        order_id=cause.order_id,
        execution=execution,
    )
    return new, event


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """One execution report as the exchange streams it (Binance: ``executionReport``):
    cumulative figures plus this event's own trade."""

    client_order_id: str
    exchange_order_id: int
    symbol: str
    status: OrderStatus
    executed_quantity: Decimal  # z
    executed_quote: Decimal  # Z
    last_quantity: Decimal  # l
    commission: Decimal  # n
    commission_asset: str | None  # N
    exchange_ts: int  # E, in nanoseconds
    reason: str  # r


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """What an exchange says of one order, cumulative over the order's life.

    ``fees`` are the commissions paid in the quote asset and ``base_fees`` those taken in
    the base asset (commissions in a third asset, such as BNB, are not counted).
    """

    client_order_id: str
    exchange_order_id: int
    symbol: str
    status: OrderStatus
    executed_quantity: Decimal
    executed_quote: Decimal
    fees: Decimal
    base_fees: Decimal
    exchange_ts: int
    reason: str = ""


def order_update(
    placed: OrderPlaced, previous: Event | None, report: ExecutionReport, receive_ts: int
) -> OrderUpdated | None:
    """Return the update ``report`` brings to an order whose latest stored event is
    ``previous`` (``placed`` when nothing else is stored yet).

    Returns ``None`` when the report brings nothing new: a duplicate, a report older than
    what is stored, or an order already final. What executed since the previous stored
    report is the difference of the cumulative figures, so a report that follows missed
    ones (after a reconnect) catches up in one step.
    """
    previous = previous or placed
    if order_final(previous):
        return None
    before = previous if isinstance(previous, OrderUpdated) else None
    executed = before.executed_quantity if before else ZERO
    if report.executed_quantity < executed:
        return None
    if report.executed_quantity == executed and before and report.status is before.status:
        return None
    delta = report.executed_quantity - executed
    quote_before = before.executed_quote if before else ZERO
    fees_before = before.fees if before else ZERO
    base_before = before.base_fees if before else ZERO
    price = (report.executed_quote - quote_before) / delta if delta else ZERO
    base_delta = report.base_fees - base_before
    return OrderUpdated(
        stream=placed.stream,
        version=previous.version + 1,
        exchange_ts=report.exchange_ts,
        receive_ts=receive_ts,
        order_id=placed.order_id,
        signal_id=placed.signal_id,
        symbol=placed.symbol,
        side=placed.side,
        status=report.status,
        executed_quantity=report.executed_quantity,
        executed_quote=report.executed_quote,
        fees=report.fees,
        base_fees=report.base_fees,
        last_quantity=delta - base_delta if placed.side is Side.BUY else delta,
        last_price=price,
        fee=report.fees - fees_before + base_delta * price,
        exchange_order_id=report.exchange_order_id,
        reason=report.reason,
    )
