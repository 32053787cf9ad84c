"""The trader: signals in, one order per signal through the gateway, stored, then acknowledged.

Idempotent by construction: the order id derives from the signal id and an order's first
event sits at version 1 of its own stream, so a redelivered signal (or a second trader
racing the first) finds the order already stored and only acknowledges it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import anyio

from algotrade.adapters.memory import SystemClock
from algotrade.apps.common import Observer, ignore
from algotrade.apps.logs import log, warn
from algotrade.domain.broker import Position, apply_fill, check_order, place_order, reject
from algotrade.domain.errors import (
    AlgotradeError,
    ConcurrencyError,
    MessagingError,
    StoreError,
)
from algotrade.domain.events import (
    Event,
    OrderFilled,
    OrderPlaced,
    PositionChanged,
    SignalEmitted,
    order_id_for,
    order_stream,
    position_stream,
)
from algotrade.domain.ports import Clock, Delivery, EventStore, OrderGateway, SignalConsumer


@dataclass
class TraderStats:
    """Counters of one trader run."""

    received: int = 0
    orders: int = 0
    filled: int = 0
    rejected: int = 0
    redelivered: int = 0
    redeliveries: int = 0
    failed: int = 0
    acknowledged: int = 0


class TraderService:
    """Acts on each delivered signal exactly once and acknowledges after storing."""

    def __init__(
        self,
        store: EventStore,
        consumer: SignalConsumer,
        gateway: OrderGateway,
        *,
        quantity: Decimal = Decimal("0.01"),
        batch_size: int = 100,
        clock: Clock | None = None,
        observe: Observer = ignore,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.observe = observe
        self.consumer = consumer
        self.gateway = gateway
        self.quantity = quantity
        self.batch_size = batch_size
        self.positions: dict[str, Position] = {}
        self.stats = TraderStats()

    async def position(self, symbol: str) -> Position:
        """Return the symbol's position, loading the last stored one on first use."""
        found = self.positions.get(symbol)
        if found is None:
            last = await self.store.last_event(position_stream(symbol))
            found = (
                Position.from_event(last) if isinstance(last, PositionChanged) else Position(symbol)
            )
            self.positions[symbol] = found
        return found

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        """Act on every delivery of a batch, store the batch's orders, then acknowledge.

        Orders of the whole batch are stored in one append; if another trader raced this
        one (a conflict), the batch is redone one signal at a time against fresh state. A
        delivery whose handling fails is not acknowledged: it stays pending, comes back
        later, and after too many attempts goes to the dead letters with its reason.
        """
        done: list[Delivery] = []
        events: list[Event] = []
        decided: list[tuple[Delivery, list[Event]]] = []
        batch_orders: set[str] = set()
        for delivery in deliveries:
            self.stats.received += 1
            if delivery.attempt > 1:
                self.stats.redeliveries += 1
            try:
                produced = await self._decide(delivery.signal, batch_orders)
            except AlgotradeError as e:
                self._failed(delivery, e)
                continue
            events.extend(produced)
            decided.append((delivery, produced))
            done.append(delivery)
        try:
            await self.store.append(events)
        except StoreError as e:
            if not isinstance(e, ConcurrencyError):
                # Nothing stored: forget the positions advanced in memory, acknowledge
                # nothing; every delivery comes back (reclaimed) once the store answers.
                self.positions.clear()
                self.stats.failed += len(done)
                warn("trader", "store unavailable, batch left pending", error=e, size=len(done))
                return
            self.positions.clear()  # another trader moved a position: redo against the store
            done = []
            for delivery, _ in decided:
                try:
                    await self.act(delivery.signal)
                except AlgotradeError as e:
                    self._failed(delivery, e)
                    continue
                done.append(delivery)
        else:
            for _, produced in decided:
                self._record(produced)
        await self.consumer.ack(done)
        self.stats.acknowledged += len(done)
        self._observe(done)

    def _observe(self, done: Sequence[Delivery]) -> None:
        """Record the latencies of acknowledged deliveries (Redis entry ids carry the time
        they were added, in milliseconds)."""
        now = self.clock.now_ns()
        for delivery in done:
            added_ms, dash, _ = delivery.token.partition("-")
            if dash and added_ms.isdigit():
                self.observe("published_to_acked_seconds", now / 1e9 - int(added_ms) / 1e3)
            self.observe("exchange_to_acked_seconds", (now - delivery.signal.exchange_ts) / 1e9)

    def _failed(self, delivery: Delivery, error: AlgotradeError) -> None:
        self.stats.failed += 1
        warn(
            "trader",
            "signal not acted upon, left pending",
            entry=delivery.token,
            signal=delivery.signal.signal_id,
            attempt=delivery.attempt,
            error=error,
        )

    async def _decide(self, signal: SignalEmitted, batch_orders: set[str]) -> list[Event]:
        """Return the events of the signal's order, or none if the order already exists.

        Positions advance in memory as orders fill; the caller stores the events.
        """
        order_id = order_id_for(signal.signal_id)
        if order_id in batch_orders or await self.store.last_event(order_stream(order_id)):
            self.stats.redelivered += 1
            return []
        batch_orders.add(order_id)
        position = await self.position(signal.symbol)
        order = place_order(signal, position, self.quantity)
        reason = check_order(order, position)
        outcome = reject(order, reason) if reason else await self.gateway.submit(order)
        if isinstance(outcome, OrderFilled):
            self.positions[signal.symbol], changed = apply_fill(position, outcome)
            return [order, outcome, changed]
        return [order, outcome]

    def _record(self, produced: list[Event]) -> None:
        """Count and log one stored order (nothing when nothing was stored)."""
        if not produced:
            return
        order, outcome = produced[0], produced[1]
        assert isinstance(order, OrderPlaced)
        self.stats.orders += 1
        filled = isinstance(outcome, OrderFilled)
        if filled:
            self.stats.filled += 1
        else:
            self.stats.rejected += 1
        log(
            "trader",
            "order",
            id=order.order_id,
            signal=order.signal_id,
            side=order.side,
            quantity=order.quantity,
            status="FILLED" if filled else "REJECTED",
            price=getattr(outcome, "price", None),
            reason=getattr(outcome, "reason", None),
        )

    async def act(self, signal: SignalEmitted) -> None:
        """Turn one signal into its one order and store it, unless it is already stored."""
        for _ in range(3):
            try:
                produced = await self._decide(signal, set())
                result = await self.store.append(produced)
            except ConcurrencyError as e:
                if e.stream.startswith("order-"):
                    self.stats.redelivered += 1
                    return  # another trader stored this order first
                self.positions.pop(signal.symbol, None)  # another trader moved it: reload
                continue
            if produced and result.duplicates:
                self.stats.redelivered += 1
                return
            self._record(produced)
            return
        raise ConcurrencyError(position_stream(signal.symbol), 0)

    async def run(self, stop: anyio.Event, *, drained: anyio.Event | None = None) -> None:
        """Receive and act until ``stop`` is set and nothing is left to receive."""
        backoff = 0.1
        while True:
            try:
                deliveries = await self.consumer.receive(self.batch_size, 0.1)
                if deliveries:
                    await self.handle(deliveries)
                    backoff = 0.1
                    continue
            except MessagingError as e:
                warn("trader", "signal bus unavailable, retrying", error=e, retry_in=backoff)
                if stop.is_set():
                    break
                with anyio.move_on_after(backoff):
                    await stop.wait()
                backoff = min(backoff * 2, 5.0)
                continue
            if stop.is_set():
                break
        if drained is not None:
            drained.set()
