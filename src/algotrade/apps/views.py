"""Read models for humans and scripts: signals, orders and positions as plain objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from algotrade.domain.events import (
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    PositionChanged,
    SignalEmitted,
)


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
        "price": str(signal.price),
        "short_sma": signal.short_sma,
        "long_sma": signal.long_sma,
        "bar_time": iso(signal.bar_time),
        "interval": signal.interval,
        "strategy": signal.strategy,
        "params": dict(signal.params),
        "emitted_at": iso(signal.exchange_ts),
    }


def order_view(placed: OrderPlaced, outcome: OrderFilled | OrderRejected | None) -> dict[str, Any]:
    """Return the JSON object of an order and its latest state."""
    view: dict[str, Any] = {
        "id": placed.order_id,
        "signal_id": placed.signal_id,
        "symbol": placed.symbol,
        "side": str(placed.side),
        "quantity": str(placed.quantity),
        "price": None,
        "fee": None,
        "status": "NEW",
        "reason": None,
        "time": iso(placed.exchange_ts),
    }
    if isinstance(outcome, OrderFilled):
        view.update(status="FILLED", price=str(outcome.price), fee=str(outcome.fee))
    elif isinstance(outcome, OrderRejected):
        view.update(status="REJECTED", reason=outcome.reason)
    return view


def position_view(position: PositionChanged) -> dict[str, Any]:
    """Return the JSON object of a position."""
    return {
        "symbol": position.symbol,
        "quantity": str(position.quantity),
        "average_price": str(position.average_price),
        "realised_pnl": str(position.realised_pnl),
        "fees_paid": str(position.fees_paid),
        "updated_at": iso(position.exchange_ts),
    }
