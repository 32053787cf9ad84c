"""Adapters built on the event store: a signal consumer, a quote source, the paper gateway.

They let separate processes cooperate through one store: the trader follows the signals
the processor stored, and fills paper orders at the last stored top of book.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import anyio

from algotrade.adapters.redelivery import Redelivery
from algotrade.domain.broker import Position, paper_fill
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    SignalEmitted,
)
from algotrade.domain.ports import Delivery, EventStore, QuoteSource, Tracking
from algotrade.domain.streams import depth_stream
from algotrade.domain.values import TopOfBook


class StoreSignalConsumer:
    """Follows stored :class:`SignalEmitted` events; an ack records the consumer's position.

    Delivery is at least once, in store order. The recorded position never passes a signal
    handed out and not acknowledged: when a batch comes back partly unacknowledged (its
    orders could not be stored, the gateway failed), the next :meth:`receive` hands it out
    again from the first such signal, after a back-off that doubles up to ``max_retry_wait``
    (a failing store or exchange is not hammered). Later signals wait meanwhile: a trader
    acts on signals in order. After a crash the consumer resumes from the recorded
    position, so a signal acted upon but not yet acknowledged comes again; the trader
    recognises it by its order id.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        name: str = "trader",
        poll: float = 0.05,
        max_retry_wait: float = 5.0,
    ) -> None:
        self.store = store
        self.name = name
        self.poll = poll
        self._redelivery = Redelivery(2 * poll, max_retry_wait)
        self._cursor: int | None = None  # where the next read starts
        self._acked = 0  # the recorded position: every signal up to it has its order
        self._open: set[int] = set()  # positions handed out and not acknowledged
        self._handed: dict[int, int] = {}  # positions after the recorded one -> deliveries

    async def receive(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        """Return up to ``max_count`` stored signals: the unacknowledged ones again (once
        their back-off has passed), else the next ones after the cursor."""
        if self._cursor is None:
            self._cursor = self._acked = await self.store.tracking_position(self.name)
        if self._open:
            self._again()
        if not await self._redelivery.due(timeout):
            return []
        with anyio.move_on_after(timeout):
            while True:
                found = await self.store.read_all(
                    self._cursor, limit=max_count, types=(SignalEmitted,)
                )
                if found:
                    self._cursor = found[-1].position
                    out = []
                    for stored in found:
                        if isinstance(stored.event, SignalEmitted):
                            position = stored.position
                            attempt = self._handed[position] = self._handed.get(position, 0) + 1
                            self._open.add(position)
                            out.append(Delivery(str(position), stored.event, attempt))
                    return out
                await anyio.sleep(self.poll)
        return []

    def _again(self) -> None:
        """Rewind to the first unacknowledged signal and back off (longer each time)."""
        first = min(self._open)
        self._open.clear()
        self._cursor = first - 1  # the next read starts at ``first``
        self._redelivery.schedule(self._handed[first] + 1)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Record the highest position below which every signal handed out is acknowledged."""
        if not deliveries:
            return
        for delivery in deliveries:
            self._open.discard(int(delivery.token))
        assert self._cursor is not None
        top = min(self._open) - 1 if self._open else self._cursor
        if top > self._acked:
            await self.store.append([], tracking=Tracking(self.name, top))
            self._acked = top
            for position in [p for p in self._handed if p <= top]:
                del self._handed[position]


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
