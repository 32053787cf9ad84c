"""Ports: what the core needs from the outside world, as ``typing.Protocol`` classes.

Adapters satisfy these structurally, without inheriting. Signatures speak domain types
only; no driver object or raw dict crosses a port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from algotrade.domain.bars import Interval
from algotrade.domain.broker import ExecutionEvent, ExecutionReport, Position
from algotrade.domain.events import (
    BarClosed,
    Event,
    MarketEvent,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    OrderUpdated,
    SignalEmitted,
)
from algotrade.domain.initialisers import fast_init
from algotrade.domain.rules import SymbolInfo
from algotrade.domain.values import TopOfBook


@fast_init
@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event with its global position in the store (1, 2, 3, ... in append order)."""

    position: int
    event: Event


@dataclass(frozen=True, slots=True)
class Tracking:
    """How far a named consumer got: stored atomically with the events it produced."""

    name: str
    position: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append stored, and how many of the given events were already there."""

    stored: tuple[StoredEvent, ...]
    duplicates: int


class EventStore(Protocol):
    """An append-only log of domain events, in streams, with a global order.

    Each event names its ``stream`` and ``version``; a stream's versions are 1, 2, 3, ...
    Appending an event whose ``id`` is already stored is a duplicate, skipped and counted.
    Appending a different event at an occupied ``(stream, version)`` raises
    :class:`~algotrade.domain.errors.ConcurrencyError` and stores nothing of the batch.
    """

    async def append(
        self, events: Sequence[Event], *, tracking: Tracking | None = None
    ) -> AppendResult:
        """Store ``events`` (and ``tracking``) atomically."""
        ...

    async def read_stream(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Return a stream's events with version above ``after_version``, in order."""
        ...

    async def last_event(self, stream: str) -> Event | None:
        """Return the stream's latest event, if any."""
        ...

    async def read_all(
        self,
        after: int = 0,
        *,
        limit: int = 1000,
        types: tuple[type[Event], ...] | None = None,
        levels: bool = True,
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events with position above ``after``, in order.

        ``levels=False`` says the reader needs no depth levels (it reads the top of book):
        a store that decodes documents may then return depth diffs with empty ``bids`` and
        ``asks`` (every other field as stored), which is most of the cost of reading them.
        """
        ...

    async def head(self) -> int:
        """Return the highest position stored (0 when empty)."""
        ...

    async def wait(self, after: int, timeout: float) -> bool:
        """Wait until an event above ``after`` exists or ``timeout`` seconds pass."""
        ...

    async def tracking_position(self, name: str) -> int:
        """Return the position recorded for a consumer (0 when none)."""
        ...

    async def ping(self) -> None:
        """Check, once and without retrying, that the store answers; raise ``StoreError``."""
        ...

    async def close(self) -> None:
        """Release the store's resources; pending writes are already durable."""
        ...


@dataclass(frozen=True, slots=True)
class RejectedInput:
    """A piece of input that could not be understood, kept aside with where it came from."""

    source: str
    where: str
    reason: str
    raw: str


class MarketFeed(Protocol):
    """A source of market events for one or more symbols, in arrival order."""

    @property
    def symbols(self) -> tuple[str, ...]:
        """Return the symbols this feed produces."""
        ...

    @property
    def rejected(self) -> int:
        """Return how many malformed inputs were counted and set aside."""
        ...

    def drain_rejects(self) -> list[RejectedInput]:
        """Return (and forget) the malformed inputs set aside since the last call."""
        ...

    def batches(self) -> AsyncIterator[Sequence[MarketEvent]]:
        """Yield market events in batches, in arrival order; end when the source ends."""
        ...

    async def request_snapshot(self, symbol: str) -> None:
        """Ask for a fresh book snapshot of ``symbol``; it arrives later in the batches."""
        ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """One signal handed to a consumer, to acknowledge once acted upon."""

    token: str
    signal: SignalEmitted
    attempt: int = 1


class SignalPublisher(Protocol):
    """Where the processor announces stored signals."""

    async def publish(self, signals: Sequence[SignalEmitted]) -> None:
        """Publish stored signals, in order."""
        ...


class SignalConsumer(Protocol):
    """Where the trader takes signals from, at least once, acknowledging each."""

    async def receive(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        """Return up to ``max_count`` deliveries, waiting at most ``timeout`` seconds."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge deliveries whose effects are stored."""
        ...


class QuoteSource(Protocol):
    """The latest top of book of a symbol."""

    async def latest(self, symbol: str) -> TopOfBook | None:
        """Return the latest known top of book, or ``None``."""
        ...


class OrderGateway(Protocol):
    """Where orders are executed: a paper broker or an exchange.

    ``submit`` must be idempotent per ``order_id``: submitting an order the gateway has
    already placed (a redelivered signal, a retry after a timeout) returns that order's
    state and never places a second one.
    """

    async def submit(self, order: OrderPlaced) -> OrderFilled | OrderRejected | OrderUpdated:
        """Execute an order; return its fill, its rejection, or the exchange's report of
        it (accepted, partly filled, expired, ...).

        Raises:
            MessagingError: the gateway could not learn what became of the order; the
                caller leaves the signal pending and submits again later.
        """
        ...

    async def free_quote(self, symbol: str, position: Position) -> Decimal | None:
        """Return the free balance of ``symbol``'s quote asset (``None`` when unknown)."""
        ...

    async def dust(self, symbol: str) -> Decimal:
        """Return the largest quantity of ``symbol`` that cannot be sold (under the lot step
        or the minimum quantity): a position holding no more than that is flat."""
        ...


class ExchangeOrders(OrderGateway, Protocol):
    """An exchange's order side: an :class:`OrderGateway` whose orders can also be looked
    up and cancelled there (Binance; the paper broker fills at once and needs neither)."""

    async def lookup(self, order: OrderPlaced) -> ExecutionReport | None:
        """Return the order's cumulative state on the exchange (``None``: unknown there).

        Raises:
            ExchangeError: the exchange could not be asked.
        """
        ...

    async def cancel(self, order: OrderPlaced) -> ExecutionReport | None:
        """Cancel a working order; return its final state (``None``: unknown there).

        Raises:
            ExchangeError: the exchange could not be asked.
        """
        ...

    async def symbol_info(self, symbol: str) -> SymbolInfo:
        """Return the symbol's order filters and its two assets.

        Raises:
            ExchangeError: the exchange could not be asked.
        """
        ...


class Stop(Protocol):
    """A one-way switch a long-running call watches (``anyio.Event`` is one)."""

    def is_set(self) -> bool:
        """Return whether the caller asked to stop."""
        ...

    async def wait(self) -> object:
        """Return once the caller asked to stop."""
        ...


class ExecutionReports(Protocol):
    """The exchange's stream of execution reports of the account's orders."""

    async def run(
        self,
        handle: Callable[[ExecutionEvent], Awaitable[None]],
        connected: Callable[[], Awaitable[None]],
        stop: Stop,
    ) -> None:
        """Deliver every report to ``handle`` until ``stop`` is set, reconnecting after a
        loss; ``connected`` is awaited after every (re)connection (reports may have been
        missed: the caller reconciles)."""
        ...


@runtime_checkable
class TradeBackfill(Protocol):
    """A market feed that can fetch trades it missed (Binance: aggregate trades by id)."""

    async def backfill_trades(self, symbol: str, first_id: int, last_id: int) -> None:
        """Fetch the trades ``first_id``..``last_id``: they arrive later in the feed's
        batches; what cannot be fetched stays missing (the collector records a gap)."""
        ...


class Clock(Protocol):
    """Wall and monotonic time, injected so that the core never reads a clock itself."""

    def now_ns(self) -> int:
        """Return Unix time in nanoseconds."""
        ...

    def monotonic(self) -> float:
        """Return a monotonic time in seconds."""
        ...


class BarHistory(Protocol):
    """Closed bars from before anything was stored: the strategy's warm-up."""

    async def bars_before(
        self, symbol: str, interval: Interval, before_ns: int, count: int
    ) -> list[BarClosed]:
        """Return up to ``count`` consecutive closed bars ending at or before ``before_ns``,
        oldest first (fewer when the exchange has fewer, none for an unsupported interval).

        Raises:
            ExchangeError: the history could not be fetched.
        """
        ...
