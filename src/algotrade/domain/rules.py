"""Exchange rules an order must satisfy before it is sent: tick size, lot size, notional.

Binance publishes them per symbol in ``/api/v3/exchangeInfo`` filters (``PRICE_FILTER``,
``LOT_SIZE``, ``MARKET_LOT_SIZE``, ``MIN_NOTIONAL`` or ``NOTIONAL``). An order that cannot
satisfy them is rejected here, with the reason, and never reaches the exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """One symbol's order filters (zero: no such limit)."""

    symbol: str
    tick_size: Decimal = ZERO
    step_size: Decimal = ZERO
    min_qty: Decimal = ZERO
    max_qty: Decimal = ZERO
    market_step_size: Decimal = ZERO
    market_min_qty: Decimal = ZERO
    market_max_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    max_notional: Decimal = ZERO


def round_down(value: Decimal, step: Decimal) -> Decimal:
    """Return ``value`` rounded down to a multiple of ``step`` (unchanged when step is 0)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def fit_market_order(
    rules: SymbolRules, quantity: Decimal, reference_price: Decimal
) -> Decimal | str:
    """Return the quantity to send for a market order (rounded down to the lot step), or
    why no valid order exists. ``reference_price`` estimates the notional (the last price
    or the side of the book the order will take)."""
    step = rules.market_step_size or rules.step_size
    minimum = max(rules.market_min_qty, rules.min_qty)
    maximum = rules.market_max_qty or rules.max_qty
    fitted = round_down(quantity, step)
    if fitted <= 0 or fitted < minimum:
        return f"quantity {quantity} is below the minimum {minimum} (step {step})"
    if maximum and fitted > maximum:
        return f"quantity {fitted} is above the maximum {maximum}"
    notional = fitted * reference_price
    if rules.min_notional and notional < rules.min_notional:
        return f"notional {notional} is below the minimum {rules.min_notional}"
    if rules.max_notional and notional > rules.max_notional:
        return f"notional {notional} is above the maximum {rules.max_notional}"
    return fitted


def fit_limit_order(
    rules: SymbolRules, quantity: Decimal, price: Decimal
) -> tuple[Decimal, Decimal] | str:
    """Return ``(quantity, price)`` rounded down to the lot step and tick size, or why no
    valid order exists."""
    fitted_price = round_down(price, rules.tick_size)
    if fitted_price <= 0:
        return f"price {price} is below the tick size {rules.tick_size}"
    fitted = round_down(quantity, rules.step_size)
    if fitted <= 0 or fitted < rules.min_qty:
        return f"quantity {quantity} is below the minimum {rules.min_qty} (step {rules.step_size})"
    if rules.max_qty and fitted > rules.max_qty:
        return f"quantity {fitted} is above the maximum {rules.max_qty}"
    notional = fitted * fitted_price
    if rules.min_notional and notional < rules.min_notional:
        return f"notional {notional} is below the minimum {rules.min_notional}"
    if rules.max_notional and notional > rules.max_notional:
        return f"notional {notional} is above the maximum {rules.max_notional}"
    return fitted, fitted_price


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """What the gateway needs of a symbol: its filters and its two assets."""

    rules: SymbolRules
    base: str
    quote: str

    def commission(self, amount: Decimal, asset: str | None) -> tuple[Decimal, Decimal]:
        """Return a commission as (paid in the quote asset, taken in the base asset); one
        in a third asset (BNB) counts in neither."""
        if asset == self.quote:
            return amount, Decimal(0)
        if asset == self.base:
            return Decimal(0), amount
        return Decimal(0), Decimal(0)
