"""The trader: signals in, one order per signal through the gateway, stored, then acknowledged.

Idempotent by construction: the order id derives from the signal id and an order's first
event sits at version 1 of its own stream, so a redelivered signal (or a second trader
racing the first) finds the order already stored and only acknowledges it. The gateway is
idempotent per order id too (Binance: the client order id), so a trader that placed an
order and died before storing it finds that order on the exchange instead of placing it
again.

Before an order is sent: the kill switch (``algotrade trader --halt``: a
:class:`TradingHalted` event in the store, seen by every trader within a second), the
position sizing, and the maximum position. What blocks an order still stores it, rejected
with the reason, so every signal keeps its one order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import anyio

from algotrade.domain.broker import (
    Position,
    Sizing,
    SizingKind,
    apply_execution,
    apply_fill,
    check_order,
    intent_of,
    limit_price,
    place_order,
    reject,
)
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
    OrderRejected,
    OrderUpdated,
    PositionChanged,
    SignalEmitted,
    TradingHalted,
    TradingResumed,
    order_id_for,
)
from algotrade.domain.ports import (
    Clock,
    Delivery,
    EventStore,
    OrderGateway,
    SignalConsumer,
)
from algotrade.domain.streams import (
    CONTROL_STREAM,
    StreamKind,
    order_stream,
    position_stream,
    stream_kind,
)
from algotrade.domain.values import Side
from algotrade.services.common import Observer, ignore
from algotrade.services.logs import log, warn


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
    working: int = 0  # orders the exchange accepted without filling them at once
    halted: int = 0  # orders refused by the kill switch


class TraderService:
    """Acts on each delivered signal exactly once and acknowledges after storing."""

    def __init__(
        self,
        store: EventStore,
        consumer: SignalConsumer,
        gateway: OrderGateway,
        *,
        clock: Clock,
        quantity: Decimal = Decimal("0.01"),
        sizing: Sizing | None = None,
        max_position: Decimal | None = None,
        limit_offset_bps: Decimal | None = None,
        batch_size: int = 100,
        observe: Observer = ignore,
    ) -> None:
        self.store = store
        self.clock = clock
        self.observe = observe
        self.observe_data: Observer = observe
        """Records latencies read from the data's own times (the end-to-end one): the
        services count those of replayed or simulated data instead (``unmeasured``)."""
        self.consumer = consumer
        self.gateway = gateway
        self.sizing = sizing or Sizing(SizingKind.QUANTITY, quantity)
        self.max_position = max_position
        self.limit_offset_bps = limit_offset_bps
        """``None``: market orders; else limit orders at the signal's price, moved this many
        basis points towards the order's side (a BUY below, a SELL above)."""
        self.batch_size = batch_size
        self.positions: dict[str, Position] = {}
        self.working: dict[str, OrderPlaced] = {}  # orders the exchange may still change
        self.stats = TraderStats()
        self._halt: tuple[float, TradingHalted | None] | None = None

    async def halted(self) -> TradingHalted | None:
        """Return the kill switch's event while it is set (read from the store, cached 1 s)."""
        now = self.clock.monotonic()
        if self._halt is None or now - self._halt[0] >= 1.0:
            last = await self.store.last_event(CONTROL_STREAM)
            self._halt = (now, last if isinstance(last, TradingHalted) else None)
        return self._halt[1]

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
            self.observe_data(
                "exchange_to_acked_seconds", (now - delivery.signal.exchange_ts) / 1e9
            )
            self.observe_data("received_to_acked_seconds", (now - delivery.signal.receive_ts) / 1e9)

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
        halt = await self.halted()
        intent = intent_of(signal)  # what the strategy asked for, else the trader's settings
        sizing = intent.sizing or self.sizing
        offset = (
            self.limit_offset_bps if intent.limit_offset_bps is None else intent.limit_offset_bps
        )
        quantity, unsized = Decimal(0), None  # a SELL closes the position: place_order sizes it
        if signal.side is Side.BUY:
            free = None
            if sizing.kind is SizingKind.FRACTION and not halt:
                free = await self.gateway.free_quote(signal.symbol, position)
            sized = sizing.quantity(signal.price, free)
            quantity, unsized = (sized, None) if isinstance(sized, Decimal) else (Decimal(0), sized)
        order = place_order(
            signal, position, quantity, limit_price=limit_price(signal.price, signal.side, offset)
        )
        reason: str | None
        if halt:
            self.stats.halted += 1
            reason = f"trading halted by the kill switch: {halt.reason}"
        elif unsized is not None:
            reason = f"cannot size the order: {unsized}"
        elif self.working and (working := self._working_on(signal.symbol)):
            reason = f"order {working} is still working on the exchange"
        else:
            dust = await self.gateway.dust(signal.symbol)
            reason = check_order(order, position, max_position=self.max_position, dust=dust)
        outcome: OrderFilled | OrderRejected | OrderUpdated
        if reason:
            outcome = reject(order, reason)
        else:
            sent = self.clock.monotonic()
            outcome = await self.gateway.submit(order)
            self.observe("order_placement_seconds", self.clock.monotonic() - sent)
        if isinstance(outcome, OrderFilled):
            self.positions[signal.symbol], changed = apply_fill(position, outcome)
            return [order, outcome, changed]
        if isinstance(outcome, OrderUpdated):
            if not outcome.status.final:
                self.working[order.order_id] = order
            executed = apply_execution(position, outcome)
            if executed is not None:
                self.positions[signal.symbol], event = executed
                return [order, outcome, event]
        return [order, outcome]

    def _working_on(self, symbol: str) -> str | None:
        """Return the id of an order on ``symbol`` the exchange may still fill, if any."""
        return next((o.order_id for o in self.working.values() if o.symbol == symbol), None)

    def _record(self, produced: list[Event]) -> None:
        """Count and log one stored order (nothing when nothing was stored)."""
        if not produced:
            return
        order, outcome = produced[0], produced[1]
        assert isinstance(order, OrderPlaced)
        self.stats.orders += 1
        price: Decimal | None = None
        if isinstance(outcome, OrderFilled):
            status, price = "FILLED", outcome.price
        elif isinstance(outcome, OrderUpdated):
            status, price = str(outcome.status), outcome.average_price
        else:
            status = "REJECTED"
        if status == "FILLED":
            self.stats.filled += 1
        elif isinstance(outcome, OrderRejected) or status == "REJECTED":
            self.stats.rejected += 1
        else:
            self.stats.working += 1
        log(
            "trader",
            "order",
            id=order.order_id,
            signal=order.signal_id,
            side=order.side,
            quantity=order.quantity,
            limit=order.limit_price,
            status=status,
            price=price,
            reason=getattr(outcome, "reason", None) or None,
        )

    async def act(self, signal: SignalEmitted) -> None:
        """Turn one signal into its one order and store it, unless it is already stored."""
        for _ in range(3):
            try:
                produced = await self._decide(signal, set())
                result = await self.store.append(produced)
            except ConcurrencyError as e:
                if stream_kind(e.stream) is StreamKind.ORDER:
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


async def set_kill_switch(
    store: EventStore, *, halt: bool, reason: str, clock: Clock
) -> TradingHalted | TradingResumed:
    """Set (``halt``) or clear the kill switch for every trader on ``store``; return the
    stored event. Running traders see it within a second."""
    for _ in range(5):
        last = await store.last_event(CONTROL_STREAM)
        version = (last.version if last else 0) + 1
        now = clock.now_ns()
        event: TradingHalted | TradingResumed = (
            TradingHalted(
                stream=CONTROL_STREAM, version=version, exchange_ts=now, receive_ts=now,
                reason=reason,
            )
            if halt
            else TradingResumed(
                stream=CONTROL_STREAM, version=version, exchange_ts=now, receive_ts=now,
                reason=reason,
            )
        )  # fmt: skip
        try:
            await store.append([event])
        except ConcurrencyError:
            continue  # someone else switched at the same moment: switch after them
        log("trader", "kill switch", halted=halt, reason=reason, version=version)
        return event
    raise ConcurrencyError(CONTROL_STREAM, 0)


async def signals_without_orders(store: EventStore) -> list[SignalEmitted]:
    """Return the stored signals that have no order yet, in store order."""
    out: list[SignalEmitted] = []
    after = 0
    while page := await store.read_all(after, limit=1000, types=(SignalEmitted,)):
        after = page[-1].position
        for stored in page:
            signal = stored.event
            if isinstance(signal, SignalEmitted) and not await store.last_event(
                order_stream(order_id_for(signal.signal_id))
            ):
                out.append(signal)
    return out
