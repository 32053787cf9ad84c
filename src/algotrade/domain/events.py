"""Domain events: immutable facts, each with its stream, version and two timestamps.

Every event is a frozen, slotted, keyword-only dataclass named in the past tense. It
carries:

* ``stream`` and ``version``: where it belongs in the event store. Sources create market
  events with ``version=0`` ("not yet stored"); the writer that appends them assigns the
  next version of the stream.
* ``exchange_ts`` and ``receive_ts``: the exchange's event time and the time algotrade
  received it, both integer nanoseconds since the Unix epoch, passed in, never read from a
  clock here.
* ``id``: a deterministic identity derived from the event's natural key, so that a replay
  produces the same ids and a repeated append is recognised as a duplicate.

Prices and quantities are :class:`~decimal.Decimal`, parsed from the exchange's strings.
Indicator values (SMAs) are floats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeAlias, TypeVar

from algotrade.domain.initialisers import copier, fast_init
from algotrade.domain.values import (
    GapReason,
    Indicators,
    OrderStatus,
    Params,
    PriceLevel,
    Side,
    TopOfBook,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all domain events."""

    stream: str
    version: int
    exchange_ts: int
    receive_ts: int

    @property
    def id(self) -> str:
        """Return the event's deterministic identity."""
        raise NotImplementedError


E = TypeVar("E", bound=Event)
_COPIERS: dict[type[Event], Callable[..., Event]] = {}


def with_version(event: E, version: int) -> E:
    """Return a copy of ``event`` at ``version``: a fast ``dataclasses.replace``.

    Appending assigns versions to stored market events, so this sits on the hot path.
    """
    cls = type(event)
    copy = _COPIERS.get(cls)
    if copy is None:
        copy = _COPIERS[cls] = copier(cls, ("version",))
    return copy(event, version)  # type: ignore[return-value]  # same class as event


def applied(diff: DepthDiffReceived, version: int, top: TopOfBook | None) -> DepthDiffReceived:
    """Return ``diff`` as stored once applied to a book: at ``version``, with the top of
    book after it (a fast ``dataclasses.replace``: the collector does this for every diff).
    """
    return _apply_copy(diff, version, top)


# --- market data -------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class DepthDiffReceived(Event):
    """An incremental order-book update (Binance ``depthUpdate``).

    ``top`` is the top of book after the diff was applied; it is ``None`` until the
    collector applied the diff to its synchronised book.
    """

    exchange: str
    symbol: str
    first_update_id: int
    final_update_id: int
    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]
    top: TopOfBook | None = None

    @property
    def id(self) -> str:
        return f"depth:{self.exchange}:{self.symbol}:{self.final_update_id}"


_apply_copy = copier(DepthDiffReceived, ("version", "top"))


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class BookSnapshotTaken(Event):
    """A full order-book snapshot (Binance ``GET /api/v3/depth``)."""

    exchange: str
    symbol: str
    last_update_id: int
    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]
    top: TopOfBook | None = None

    @property
    def id(self) -> str:
        return f"snapshot:{self.exchange}:{self.symbol}:{self.last_update_id}"


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TradeReceived(Event):
    """One (aggregate) trade."""

    exchange: str
    symbol: str
    trade_id: int
    price: Decimal
    quantity: Decimal
    buyer_is_maker: bool

    @property
    def id(self) -> str:
        return f"trade:{self.exchange}:{self.symbol}:{self.trade_id}"


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SequenceGapDetected(Event):
    """A symbol's book lost sync; a resync from a fresh snapshot follows.

    ``expected_update_id`` is the first update id that was missing (or the snapshot's
    ``lastUpdateId + 1``) and ``received_update_id`` the first update id that arrived instead.
    """

    exchange: str
    symbol: str
    reason: GapReason
    expected_update_id: int
    received_update_id: int

    @property
    def id(self) -> str:
        return (
            f"gap:{self.exchange}:{self.symbol}:{self.reason}:"
            f"{self.expected_update_id}:{self.received_update_id}"
        )


MarketEvent: TypeAlias = DepthDiffReceived | BookSnapshotTaken | TradeReceived


# --- strategy ----------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class BarClosed(Event):
    """A time bar closed. ``open_time`` and ``close_time`` are exchange-time nanoseconds.

    ``last_position`` is the store position of the last market event inside the bar, so a
    restarted processor resumes right after it.
    """

    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    updates: int
    last_position: int

    @property
    def id(self) -> str:
        return f"bar:{self.symbol}:{self.interval}:{self.open_time}"


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SignalEmitted(Event):
    """A strategy decided to buy or sell on a closed bar.

    ``signal_id`` is a pure function of the strategy, its parameters, the symbol, the
    interval and the bar, so the same data always yields the same ids.
    """

    signal_id: str
    symbol: str
    interval: str
    side: Side
    price: Decimal
    short_sma: float
    long_sma: float
    bar_time: int
    strategy: str
    params: Params = field(default=())
    indicators: Indicators = field(default=())
    """The strategy's indicator values when it decided, by name (``short_sma`` and
    ``long_sma`` above keep the seed's two, for every strategy)."""
    size_kind: str = ""
    """The strategy's sizing of the order (``quantity``, ``quote``, ``fraction``); ``""``:
    the trader's own."""
    size: Decimal | None = None
    """The sizing's value (a base quantity, a quote amount, a fraction)."""
    limit_offset_bps: Decimal | None = None
    """A limit order this many basis points from the price; ``None``: the trader's choice."""

    @property
    def id(self) -> str:
        return self.signal_id


# --- trading -----------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPlaced(Event):
    """The trader decided on an order for a signal. ``order_id`` derives from it.

    A market order by default; a limit order when ``limit_price`` is set.
    """

    order_id: str
    signal_id: str
    symbol: str
    side: Side
    quantity: Decimal
    limit_price: Decimal | None = None

    @property
    def id(self) -> str:
        return f"{self.order_id}:placed"


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled(Event):
    """An order was filled at ``price``, paying ``fee`` in quote currency."""

    order_id: str
    signal_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal

    @property
    def id(self) -> str:
        return f"{self.order_id}:filled"


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected(Event):
    """An order could not be placed or filled, with the reason."""

    order_id: str
    signal_id: str
    symbol: str
    side: Side
    reason: str

    @property
    def id(self) -> str:
        return f"{self.order_id}:rejected"


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdated(Event):
    """The exchange reported an order's state: accepted, partly or wholly filled, cancelled,
    expired or rejected.

    ``executed_quantity`` (base), ``executed_quote`` (quote), ``fees`` (commissions in quote
    currency) and ``base_fees`` (commissions taken in the base asset) are cumulative over
    the order's life. ``last_quantity`` at ``last_price`` is what changed the position
    since the previous report (net of base-asset commission; zero when nothing executed),
    and ``fee`` the quote value of that part's commission. The id is (order, status,
    executed quantity), so the same report arriving twice (in the order's REST answer and
    on the user data stream) is stored once.
    """

    order_id: str
    signal_id: str
    symbol: str
    side: Side
    status: OrderStatus
    executed_quantity: Decimal
    executed_quote: Decimal
    fees: Decimal
    base_fees: Decimal
    last_quantity: Decimal
    last_price: Decimal
    fee: Decimal
    exchange_order_id: int = 0
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.order_id}:{self.status}:{self.executed_quantity}"

    @property
    def average_price(self) -> Decimal | None:
        """Return the average execution price so far (``None`` before any execution)."""
        if not self.executed_quantity:
            return None
        return self.executed_quote / self.executed_quantity


OrderEvent: TypeAlias = OrderPlaced | OrderFilled | OrderRejected | OrderUpdated


def order_final(event: Event | None) -> bool:
    """Return whether an order whose latest stored event is ``event`` can change no more."""
    if isinstance(event, OrderFilled | OrderRejected):
        return True
    return isinstance(event, OrderUpdated) and event.status.final


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class PositionChanged(Event):
    """A symbol's position after a fill: quantity, average entry price, realised PnL, fees."""

    symbol: str
    quantity: Decimal
    average_price: Decimal
    realised_pnl: Decimal
    fees_paid: Decimal
    order_id: str
    execution: str = ""
    """Which execution of the order changed the position (empty for a whole fill)."""

    @property
    def id(self) -> str:
        if self.execution:
            return f"position:{self.symbol}:{self.order_id}:{self.execution}"
        return f"position:{self.symbol}:{self.order_id}"


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TradingHalted(Event):
    """The kill switch was set: traders place no order until :class:`TradingResumed`."""

    reason: str

    @property
    def id(self) -> str:
        return f"{self.stream}:{self.version}:halted"


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TradingResumed(Event):
    """The kill switch was cleared: traders act on signals again."""

    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.stream}:{self.version}:resumed"


def order_id_for(signal_id: str) -> str:
    """Return the order id a signal produces: the signal id itself.

    One signal, one order: keying the order by its signal makes a second order for the
    same signal impossible, and the 36-character uuid fits Binance's client order id.
    """
    return signal_id
