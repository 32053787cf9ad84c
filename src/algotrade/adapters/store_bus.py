"""Adapters built on the event store: a signal consumer, a quote source, the paper gateway.

They let separate processes cooperate through one store: the trader follows the signals
the processor stored, and fills paper orders at the last stored top of book.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import anyio

from algotrade.domain.broker import Position, paper_fill
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    SignalEmitted,
    TopOfBook,
    depth_stream,
)
from algotrade.domain.ports import Delivery, EventStore, QuoteSource, Tracking


class StoreSignalConsumer:
    """Follows stored :class:`SignalEmitted` events; an ack records the consumer's position.

    Delivery is at least once: after a crash the consumer resumes from the last recorded
    position, so a signal acted upon but not yet acknowledged comes again. The trader
    recognises it by its order id.
    """

    def __init__(self, store: EventStore, *, name: str = "trader", poll: float = 0.05) -> None:
        self.store = store
        self.name = name
        self.poll = poll
        self._cursor: int | None = None

    async def receive(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        """Return up to ``max_count`` stored signals after the cursor."""
        if self._cursor is None:
            self._cursor = await self.store.tracking_position(self.name)
        with anyio.move_on_after(timeout):
            while True:
                found = await self.store.read_all(
                    self._cursor, limit=max_count, types=(SignalEmitted,)
                )
                if found:
                    self._cursor = found[-1].position
                    return [
                        Delivery(str(s.position), s.event)
                        for s in found
                        if isinstance(s.event, SignalEmitted)
                    ]
                await anyio.sleep(self.poll)
        return []

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Record the highest acknowledged position."""
        if deliveries:
            top = max(int(d.token) for d in deliveries)
            await self.store.append([], tracking=Tracking(self.name, top))


class StoreQuoteSource:
    """The top of book carried by the latest stored depth event of a symbol."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def latest(self, symbol: str) -> TopOfBook | None:
        """Return the stored top of book, if any."""
        event = await self.store.last_event(depth_stream(symbol))
        if isinstance(event, DepthDiffReceived | BookSnapshotTaken):
            return event.top
        return None


class PaperGateway:
    """Fills orders at the current top of book, charging ``fee_rate`` of the notional.

    ``cash`` is the paper account's starting quote balance, for sizing by a fraction of it.
    """

    def __init__(
        self,
        quotes: QuoteSource,
        *,
        fee_rate: Decimal = Decimal("0.001"),
        cash: Decimal = Decimal("10000"),
    ) -> None:
        self.quotes = quotes
        self.fee_rate = fee_rate
        self.cash = cash

    async def dust(self, symbol: str) -> Decimal:
        """Return zero: the paper broker trades any quantity."""
        return Decimal(0)

    async def free_quote(self, symbol: str, position: Position) -> Decimal | None:
        """Return the starting cash plus realised PnL, less fees and the open position's cost."""
        return (
            self.cash
            + position.realised_pnl
            - position.fees_paid
            - position.quantity * position.average_price
        )

    async def submit(self, order: OrderPlaced) -> OrderFilled | OrderRejected:
        """Fill ``order`` at the latest quote, or reject it when there is none."""
        return paper_fill(order, await self.quotes.latest(order.symbol), self.fee_rate)
