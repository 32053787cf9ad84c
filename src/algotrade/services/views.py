"""Read models for humans and scripts: signals, orders and positions as plain objects.

Decimals are written as plain text (:func:`decimal_text`: ``0.00000000``, never ``0E-8``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from algotrade.domain.backtest import Trade
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    OrderUpdated,
    PositionChanged,
    SequenceGapDetected,
    SignalEmitted,
)
from algotrade.domain.values import decimal_text


def iso(ts_ns: int) -> str:
    """Return an ISO-8601 UTC timestamp with a ``Z`` suffix."""
    dt = datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signal_view(signal: SignalEmitted) -> dict[str, Any]:
    """Return the JSON object of a signal (as ``algotrade signals --json`` prints it)."""
    return {
        "id": signal.signal_id,
        "symbol": signal.symbol,
        "side": str(signal.side),
        "price": decimal_text(signal.price),
        "short_sma": signal.short_sma,
        "long_sma": signal.long_sma,
        "bar_time": iso(signal.bar_time),
        "interval": signal.interval,
        "strategy": signal.strategy,
        "params": dict(signal.params),
        "indicators": dict(signal.indicators),
        "emitted_at": iso(signal.exchange_ts),
    }


def order_view(
    placed: OrderPlaced, outcome: OrderFilled | OrderRejected | OrderUpdated | None
) -> dict[str, Any]:
    """Return the JSON object of an order and its latest state (``price`` is the average
    execution price, ``fee`` every commission in quote currency)."""
    view: dict[str, Any] = {
        "id": placed.order_id,
        "signal_id": placed.signal_id,
        "symbol": placed.symbol,
        "side": str(placed.side),
        "quantity": decimal_text(placed.quantity),
        "limit_price": None if placed.limit_price is None else decimal_text(placed.limit_price),
        "executed": None,
        "price": None,
        "fee": None,
        "status": "NEW",
        "reason": None,
        "time": iso(placed.exchange_ts),
    }
    if isinstance(outcome, OrderFilled):
        view.update(
            status="FILLED",
            executed=decimal_text(outcome.quantity),
            price=decimal_text(outcome.price),
            fee=decimal_text(outcome.fee),
        )
    elif isinstance(outcome, OrderRejected):
        view.update(status="REJECTED", reason=outcome.reason)
    elif isinstance(outcome, OrderUpdated):
        average = outcome.average_price
        view.update(
            status=str(outcome.status),
            executed=decimal_text(outcome.executed_quantity),
            price=None if average is None else decimal_text(average),
            fee=decimal_text(outcome.fees + outcome.base_fees * (average or 0)),
            reason=outcome.reason or None,
            exchange_order_id=outcome.exchange_order_id,
        )
    return view


def position_view(position: PositionChanged) -> dict[str, Any]:
    """Return the JSON object of a position."""
    return {
        "symbol": position.symbol,
        "quantity": decimal_text(position.quantity),
        "average_price": decimal_text(position.average_price),
        "realised_pnl": decimal_text(position.realised_pnl),
        "fees_paid": decimal_text(position.fees_paid),
        "updated_at": iso(position.exchange_ts),
    }


def depth_view(event: DepthDiffReceived | BookSnapshotTaken) -> dict[str, Any]:
    """Return the JSON object of a stored depth event (``algotrade depth --json``)."""
    top = event.top
    bid = ask = None
    if top is not None:
        bid = [decimal_text(top.bid_price), decimal_text(top.bid_qty)]
        ask = [decimal_text(top.ask_price), decimal_text(top.ask_qty)]
    if isinstance(event, DepthDiffReceived):
        first, final, kind = event.first_update_id, event.final_update_id, "diff"
    else:
        first = final = event.last_update_id
        kind = "snapshot"
    return {
        "symbol": event.symbol,
        "kind": kind,
        "version": event.version,
        "first_update_id": first,
        "final_update_id": final,
        "event_time": iso(event.exchange_ts),
        "received_at": iso(event.receive_ts),
        "best_bid": bid,
        "best_ask": ask,
        "bid_changes": len(event.bids),
        "ask_changes": len(event.asks),
    }


def gap_view(gap: SequenceGapDetected) -> dict[str, Any]:
    """Return the JSON object of a stored gap (``algotrade gaps --json``)."""
    return {
        "symbol": gap.symbol,
        "reason": str(gap.reason),
        "expected_update_id": gap.expected_update_id,
        "received_update_id": gap.received_update_id,
        "missing": max(0, gap.received_update_id - gap.expected_update_id),
        "detected_at": iso(gap.receive_ts),
        "stream": gap.stream,
        "version": gap.version,
    }


def trade_view(trade: Trade) -> dict[str, Any]:
    """Return the JSON object of one backtest fill."""
    return {
        "order_id": trade.order_id,
        "signal_id": trade.signal_id,
        "side": str(trade.side),
        "time": iso(trade.time),
        "price": decimal_text(trade.price),
        "quantity": decimal_text(trade.quantity),
        "fee": decimal_text(trade.fee),
        "pnl": None if trade.pnl is None else decimal_text(trade.pnl),
    }
