"""What the Binance adapter makes of an answer it cannot read: one mapping.

A REST answer missing a field, holding a number that is not one, or not JSON at all, is an
:class:`~algotrade.domain.errors.ExchangeError` naming what was asked
(``"book ticker of BTCUSDT: malformed answer: KeyError('askPrice')"``), whatever the Python
error underneath; the network's own errors are the requests' (``trading.py``: retried,
then an ``ExchangeError``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import InvalidOperation

import orjson

from algotrade.domain.errors import ExchangeError, InvalidInputError

#: What reading a malformed answer raises (JSONDecodeError is a ValueError).
MALFORMED: tuple[type[Exception], ...] = (
    KeyError, TypeError, ValueError, InvalidOperation, AttributeError, StopIteration,
    IndexError, orjson.JSONDecodeError, InvalidInputError,
)  # fmt: skip


@contextlib.contextmanager
def reading(what: str) -> Iterator[None]:
    """Turn an answer that cannot be read inside the block into an :class:`ExchangeError`."""
    try:
        yield
    except MALFORMED as e:
        raise ExchangeError(f"{what}: malformed answer: {e!r}") from None
