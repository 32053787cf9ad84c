"""Value types every event uses: sides, order statuses, gap reasons, a top of book, price
levels, decimal text, and the deterministic ids events derive from their natural keys."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TypeAlias

from algotrade.domain.errors import InvalidInputError
from algotrade.domain.initialisers import fast_init

#: Namespace of every uuid5 algotrade derives.
ALGOTRADE_NAMESPACE = uuid.UUID("6f1c3c2e-8f0a-5a7e-9d0b-6a1f2b3c4d5e")

#: One price level: (price, quantity). A quantity of zero removes the level.
PriceLevel: TypeAlias = tuple[Decimal, Decimal]


def decimal_text(number: Decimal) -> str:
    """Return a price, quantity or amount as plain decimal text, never in exponent form.

    ``str(Decimal)`` writes ``0E-8`` for a quantity rounded to 1e-8 that came to nothing
    and ``1E-7`` for a tiny fee: exact, but not what a person, or a script that reads
    Binance's ``"0.00000010"``, expects. Other values keep ``str``'s text (and its speed:
    the trader logs every order).
    """
    text = str(number)
    return f"{number:f}" if "E" in text else text


def derived_id(*parts: object) -> str:
    """Return a uuid5 string that is a pure function of ``parts``."""
    return str(uuid.uuid5(ALGOTRADE_NAMESPACE, "|".join(str(p) for p in parts)))


class Side(StrEnum):
    """Direction of a signal or an order."""

    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(StrEnum):
    """An order's state as the exchange reports it (Binance's ``X`` / ``status``)."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def final(self) -> bool:
        """Return whether nothing more can happen to an order in this state."""
        return self not in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class GapReason(StrEnum):
    """Why a symbol's order book lost its sync."""

    GAP = "gap"
    """A diff's first update id was not the previous final update id + 1."""
    STALE_SNAPSHOT = "stale_snapshot"
    """The snapshot is older than the first buffered diff: updates in between are missing."""
    CROSSED = "crossed"
    """After applying a diff the best bid was not below the best ask."""
    BUFFER_OVERFLOW = "buffer_overflow"
    """Too many diffs arrived while waiting for a snapshot."""
    RESTART = "restart"
    """A restarted collector's first snapshot is ahead of what was stored: the updates in
    between were never received (the snapshot's book includes them)."""


@fast_init
@dataclass(frozen=True, slots=True)
class TopOfBook:
    """Best bid and best ask with their quantities."""

    bid_price: Decimal
    bid_qty: Decimal
    ask_price: Decimal
    ask_qty: Decimal

    @property
    def mid(self) -> Decimal:
        """Return the mid price, exact."""
        return (self.bid_price + self.ask_price) / 2


#: A strategy parameter's value as signals carry it (in their id, the store and the stream).
ParamValue: TypeAlias = int | float | str | bool
#: A strategy's parameters as signals carry them: ``(("short", 50), ("long", 200))``.
Params: TypeAlias = tuple[tuple[str, ParamValue], ...]


def param_values(params: object) -> Params:
    """Return a strategy's ``params`` as signals carry them: ints, floats, strings and
    booleans as they are, a ``Decimal`` as its plain text (``0.001``), anything else as
    ``str``; from pairs or a mapping."""
    pairs = params.items() if isinstance(params, dict) else params
    out = []
    for key, value in pairs:  # type: ignore[attr-defined]
        if value.__class__ in (int, float, str, bool):
            out.append((str(key), value))
        elif isinstance(value, Decimal):
            out.append((str(key), decimal_text(value)))
        else:
            out.append((str(key), str(value)))
    return tuple(out)


#: A signal's indicator values, by name: ``(("rsi", 27.4),)``; the strategy names them.
Indicators: TypeAlias = tuple[tuple[str, float], ...]


def indicator_values(values: object) -> Indicators:
    """Return indicator values as signals carry them: ``(name, float)`` pairs, in order,
    from a mapping or pairs.

    Raises:
        InvalidInputError: a value is not a finite number (JSON, the stores' and the
            stream's format, holds none).
    """
    pairs = values.items() if isinstance(values, Mapping) else values
    out = []
    for key, value in pairs:  # type: ignore[attr-defined]
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if number != number or number in (float("inf"), float("-inf")):
            raise InvalidInputError(f"indicator {key!r} is not a finite number: {value!r}")
        out.append((str(key), number))
    return tuple(out)
