"""The order follower: what the exchange does with the orders the trader placed.

Execution reports update the stored orders and positions; every (re)connection and a
periodic reconciliation ask the exchange for the working orders' state; stale orders are
cancelled on request (``cancel_after``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import anyio

from algotrade.domain.broker import ExecutionEvent, ExecutionReport, apply_execution, order_update
from algotrade.domain.errors import AlgotradeError, ConcurrencyError
from algotrade.domain.events import (
    Event,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    OrderUpdated,
    order_final,
)
from algotrade.domain.ports import Clock, ExchangeOrders, ExecutionReports, Stop
from algotrade.domain.streams import order_stream
from algotrade.domain.values import OrderStatus
from algotrade.services.logs import log, warn
from algotrade.services.trader import TraderService


@dataclass
class FollowerStats:
    """What the order follower did."""

    reports: int = 0
    updates: int = 0
    unknown: int = 0  # reports of orders not stored (yet): placed outside algotrade, or early
    reconciled: int = 0
    lookups: int = 0
    failed: int = 0
    cancelled: int = 0  # working orders cancelled after ``cancel_after``


def _unknown(order: OrderPlaced, clock: Clock) -> ExecutionReport:
    """Return the final report of a working order the exchange does not know (the Spot
    Testnet forgets every order when it is reset): expired, nothing executed."""
    return ExecutionReport(
        client_order_id=order.order_id,
        exchange_order_id=0,
        symbol=order.symbol,
        status=OrderStatus.EXPIRED,
        executed_quantity=Decimal(0),
        executed_quote=Decimal(0),
        fees=Decimal(0),
        base_fees=Decimal(0),
        exchange_ts=clock.now_ns(),
        reason="unknown to the exchange",
    )


class OrderFollower:
    """Keeps stored orders and positions in step with what the exchange reports.

    Execution reports from the user data stream update the stored order (an
    :class:`OrderUpdated` per change) and the position (a :class:`PositionChanged` per
    execution), in one append. A report that does not follow the stored state (reports were
    missed) and every (re)connection make the follower ask the exchange for the order's
    cumulative state over REST instead, so a missed report is caught up in one step; working
    orders are also reconciled every ``reconcile_every`` seconds.

    With ``cancel_after`` (seconds), an order still working that long after this follower
    first saw it working (placed, or found at start-up) is cancelled on the exchange, and
    its final state stored: what it executed stays in the position, and the symbol is free
    for the next signal's order (while an order works, new orders on its symbol are
    refused).
    """

    def __init__(
        self,
        trader: TraderService,
        gateway: ExchangeOrders,
        *,
        reconcile_every: float = 60.0,
        cancel_after: float | None = None,
    ) -> None:
        self.trader = trader
        self.store = trader.store
        self.gateway = gateway
        self.reconcile_every = reconcile_every
        self.cancel_after = cancel_after
        self.stats = FollowerStats()
        self._loaded = False
        self._early: dict[str, float] = {}  # reports of orders not stored yet: id -> seen
        self._working_since: dict[str, float] = {}  # order id -> first seen working
        self._unknown_since: dict[str, float] = {}  # order id -> first found unknown

    async def load_working(self) -> None:
        """Find the stored orders that are not final yet (once, at start-up)."""
        latest: dict[str, Event] = {}
        placed: dict[str, OrderPlaced] = {}
        after = 0
        kinds = (OrderPlaced, OrderUpdated, OrderFilled, OrderRejected)
        while batch := await self.store.read_all(after, limit=1000, types=kinds):
            for stored in batch:
                event = stored.event
                order_id = getattr(event, "order_id", "")
                if isinstance(event, OrderPlaced):
                    placed[order_id] = event
                latest[order_id] = event
            after = batch[-1].position
        for order_id, order in placed.items():
            if not order_final(latest.get(order_id)):
                self.trader.working[order_id] = order
        self._loaded = True

    async def reconcile(self) -> None:
        """Ask the exchange for the state of every working order and store what changed."""
        if not self._loaded:
            await self.load_working()
        for order in list(self.trader.working.values()):
            try:
                report = await self.gateway.lookup(order)
            except AlgotradeError as e:
                self.stats.failed += 1
                warn(
                    "trader", "order not reconciled, retrying later", order=order.order_id, error=e
                )
                continue
            self.stats.lookups += 1
            if report is None:
                await self._unknown_order(order)
                continue
            self._unknown_since.pop(order.order_id, None)
            if await self.apply(order, report):
                self.stats.reconciled += 1

    async def _unknown_order(self, order: OrderPlaced) -> None:
        """Expire a working order the exchange says it does not know, once it said so at
        two reconciliations ``reconcile_every`` apart (the Spot Testnet deletes every order
        at its resets): left working, it would block its symbol for ever."""
        now = self.trader.clock.monotonic()
        first = self._unknown_since.setdefault(order.order_id, now)
        if now - first < self.reconcile_every:
            return
        del self._unknown_since[order.order_id]
        await self.apply(order, _unknown(order, self.trader.clock))
        warn("trader", "order unknown to the exchange, expired", order=order.order_id)

    async def cancel_stale(self, now: float) -> None:
        """Cancel the orders working for ``cancel_after`` seconds or more (``now``: the
        trader clock's monotonic time) and store their final state."""
        if self.cancel_after is None:
            return
        working = self.trader.working
        for order_id in [i for i in self._working_since if i not in working]:
            del self._working_since[order_id]
        for order in list(working.values()):
            since = self._working_since.setdefault(order.order_id, now)
            if now - since < self.cancel_after:
                continue
            try:
                report = await self.gateway.cancel(order) or _unknown(order, self.trader.clock)
                await self.apply(order, report)
            except AlgotradeError as e:
                self.stats.failed += 1
                warn("trader", "order not cancelled, retrying later", order=order.order_id,
                     error=e)  # fmt: skip
                continue
            if report.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
                self.stats.cancelled += 1
                log("trader", "order cancelled", id=order.order_id, status=report.status,
                    after=f"{now - since:.0f}s", executed=report.executed_quantity,
                    reason=report.reason or None)  # fmt: skip

    async def _reconcile_early(self, now: float) -> None:
        """Reconcile the orders whose reports arrived before the orders were stored."""
        for order_id, seen in list(self._early.items()):
            order = self.trader.working.get(order_id)
            if order is None and now - seen < 30.0:
                continue  # not stored yet (or not ours): look again in a second
            del self._early[order_id]
            if order is None:
                continue
            report = await self.gateway.lookup(order)
            if report is not None:
                await self.apply(order, report)

    async def on_report(self, event: ExecutionEvent) -> None:
        """Store what one execution report changed."""
        self.stats.reports += 1
        order = self.trader.working.get(event.client_order_id)
        if order is None:
            first = await self.store.read_stream(order_stream(event.client_order_id), limit=1)
            if not first or not isinstance(first[0], OrderPlaced):
                # Not ours, or a report that overtook the storing of its order: looked at
                # again for a while, and reconciled once the order is stored.
                self.stats.unknown += 1
                self._early[event.client_order_id] = self.trader.clock.monotonic()
                return
            order = first[0]
        try:
            previous = await self.store.last_event(order_stream(order.order_id))
            report = await self._cumulative(event, previous)
            if report is None:
                report = await self.gateway.lookup(order)
            if report is not None:
                await self.apply(order, report, previous=previous)
        except AlgotradeError as e:
            self.stats.failed += 1
            warn("trader", "execution report not stored", order=order.order_id, error=e)

    async def _cumulative(
        self, event: ExecutionEvent, previous: Event | None
    ) -> ExecutionReport | None:
        """Return the order's cumulative report after ``event``, or ``None`` when reports
        were missed since ``previous`` (the exchange must then be asked)."""
        before = previous if isinstance(previous, OrderUpdated) else None
        executed = before.executed_quantity if before else Decimal(0)
        fees = before.fees if before else Decimal(0)
        base_fees = before.base_fees if before else Decimal(0)
        if event.executed_quantity != executed:
            if event.executed_quantity - event.last_quantity != executed:
                return None
            info = await self.gateway.symbol_info(event.symbol)
            quote, base = info.commission(event.commission, event.commission_asset)
            fees, base_fees = fees + quote, base_fees + base
        return ExecutionReport(
            client_order_id=event.client_order_id,
            exchange_order_id=event.exchange_order_id,
            symbol=event.symbol,
            status=event.status,
            executed_quantity=event.executed_quantity,
            executed_quote=event.executed_quote,
            fees=fees,
            base_fees=base_fees,
            exchange_ts=event.exchange_ts,
            reason=event.reason,
        )

    async def apply(
        self, order: OrderPlaced, report: ExecutionReport, *, previous: Event | None = None
    ) -> bool:
        """Store the update ``report`` brings to ``order`` and its position change; return
        whether anything changed. ``previous``: the order's latest stored event, when the
        caller just read it."""
        stream = order_stream(order.order_id)
        for _ in range(5):
            if previous is None:
                previous = await self.store.last_event(stream)
            update = order_update(order, previous, report, self.trader.clock.now_ns())
            if update is None:
                if order_final(previous):
                    self.trader.working.pop(order.order_id, None)
                return False
            position = await self.trader.position(order.symbol)
            events: list[Event] = [update]
            executed = apply_execution(position, update)
            if executed is not None:
                events.append(executed[1])
            try:
                await self.store.append(events)
            except ConcurrencyError:
                self.trader.positions.pop(order.symbol, None)  # moved meanwhile: reload
                previous = None
                continue
            if executed is not None:
                self.trader.positions[order.symbol] = executed[0]
            if update.status.final:
                self.trader.working.pop(order.order_id, None)
            self.stats.updates += 1
            log(
                "trader",
                "order update",
                id=order.order_id,
                status=update.status,
                executed=update.executed_quantity,
                price=update.average_price,
                reason=update.reason or None,
            )
            return True
        raise ConcurrencyError(stream, 0)

    async def run(self, stream: ExecutionReports, stop: Stop) -> None:
        """Follow the user data stream, reconciling on every connection and periodically."""

        async def periodic() -> None:
            last = self.trader.clock.monotonic()
            while not stop.is_set():
                with anyio.move_on_after(1.0):
                    await stop.wait()
                if stop.is_set():
                    break
                now = self.trader.clock.monotonic()
                try:
                    if now - last >= self.reconcile_every:
                        last = now
                        await self.reconcile()
                    else:
                        await self._reconcile_early(now)
                    await self.cancel_stale(now)
                except AlgotradeError as e:
                    self.stats.failed += 1
                    warn("trader", "reconciliation failed, retrying later", error=e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(periodic)
            await stream.run(self.on_report, self.reconcile, stop)
            tg.cancel_scope.cancel()
