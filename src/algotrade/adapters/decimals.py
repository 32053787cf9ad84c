"""Exact decimals from text, interned: the one place wire and stored prices become numbers.

The same prices and quantities come back event after event, from Binance frames and from
the store alike. A ``Decimal`` built once per text is found again with one dict lookup
instead of being parsed again, and keeps its hash (the order book's dicts hash every
price). The table is bounded, emptied when full: an entry costs about 200 bytes, and real
depth data brings about one new text per two levels (mostly quantities; the recorded
BTCUSDT session), so a collector of busy symbols fills it within the hour. At 65,536
entries it holds about 13 MiB (500,000 held about 100 MiB).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from algotrade.domain.values import PriceLevel

_DECIMALS: dict[str, Decimal] = {}
MAX_INTERNED = 65_536


def decimal_of(text: object) -> Decimal:
    """Return the finite decimal ``text`` spells, interned.

    Raises:
        TypeError: ``text`` is not a string (a JSON number would be an inexact float).
        decimal.InvalidOperation: ``text`` is not a finite decimal number.
    """
    known: Decimal | None = _DECIMALS.get(text)  # type: ignore[call-overload]  # any hashable
    if known is not None:
        return known
    if type(text) is not str:
        raise TypeError(f"a price or quantity must be a decimal string, got {text!r}")
    value = Decimal(text)
    if not value.is_finite():
        raise InvalidOperation(f"{text!r} is not a finite number")
    if len(_DECIMALS) >= MAX_INTERNED:
        _DECIMALS.clear()
    _DECIMALS[text] = value
    return value


def forget() -> None:
    """Empty the table, and the compiled scanner's copy of it (benchmarks measure parsing
    as if every text were new)."""
    _DECIMALS.clear()
    from algotrade.adapters import speedups  # imports this module: not at the top

    speedups.forget()


def levels_of(raw: Any) -> tuple[PriceLevel, ...]:
    """Return ``[[price, quantity], ...]`` as exact levels.

    Raises:
        TypeError, ValueError, decimal.InvalidOperation: ``raw`` is not a list of pairs of
            finite decimal strings.
    """
    if type(raw) is not list:
        raise TypeError(f"levels must be a list of [price, quantity], got {type(raw).__name__}")
    cache = _DECIMALS
    try:  # the common case: every text seen before, one C-level lookup each
        return tuple([(cache[p], cache[q]) for p, q in raw])
    except (KeyError, TypeError):  # a text not seen yet (or not a text: decimal_of says so)
        return tuple([(decimal_of(p), decimal_of(q)) for p, q in raw])
