"""The collector's hot path compiled, when it was built: depth frames and the order book.

``_speedups`` (``_speedups.c``, built by ``pip install`` when a C compiler is at hand) parses
Binance depth frames straight into :class:`~algotrade.domain.events.DepthDiffReceived`,
keeps the order book (:class:`~algotrade.domain.book.OrderBook`'s algorithm over the same
``Decimal`` prices) and copies applied diffs, between three and four times as fast as the
Python code (``docs/benchmarks.md``). Without it, or with ``ALGOTRADE_SPEEDUPS=0`` in the
environment, everything here falls back to the pure-Python code, with the same results:
the tests run every case through both (``tests/unit/test_speedups.py``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

from algotrade.adapters.columns import CompiledCurve
from algotrade.adapters.decimals import decimal_of
from algotrade.domain.book import Book, BookSynchronizer
from algotrade.domain.events import DepthDiffReceived
from algotrade.domain.values import TopOfBook

EXCHANGE = "binance"


_OFF, _ON = {"0", "no", "false", "off"}, {"", "1", "yes", "true", "on"}


def _load() -> ModuleType | None:
    setting = os.environ.get("ALGOTRADE_SPEEDUPS", "").strip().lower()
    if setting in _OFF:
        return None
    if setting not in _ON:
        warnings.warn(
            f"ALGOTRADE_SPEEDUPS={setting!r} is neither 0 nor 1: using the compiled module",
            stacklevel=2,
        )
    try:
        _speedups = importlib.import_module("algotrade.adapters._speedups")
    except ModuleNotFoundError:  # not built: no C compiler at install
        return None
    except ImportError as e:  # built, but not loadable here (another Python, say)
        warnings.warn(f"the compiled module does not load ({e}): pure Python", stacklevel=2)
        return None
    _speedups.configure(
        DepthDiffReceived,
        _slots(DepthDiffReceived),
        TopOfBook,
        _slots(TopOfBook),
        decimal_of,
        EXCHANGE,
    )
    return _speedups


def _slots(cls: type[Any]) -> tuple[Any, ...]:
    """Return the slot descriptors of a slotted dataclass's fields, in field order."""
    found = []
    for field in dataclasses.fields(cls):
        descriptor = next(k.__dict__[field.name] for k in cls.__mro__ if field.name in k.__dict__)
        found.append(descriptor)
    return tuple(found)


_compiled = _load()

#: Whether the compiled module is in use.
COMPILED = _compiled is not None


#: ``scan_depth(frame, receive_ts)`` when compiled, else ``None``: the depth event of a
#: Binance combined-stream depth frame as Binance writes it; ``None`` for anything else
#: (other streams, other spellings, bad input), which the caller parses the slow way (and
#: which reports what is wrong).
scan_depth: Callable[[str | bytes, int], DepthDiffReceived | None] | None = (
    None if _compiled is None else _compiled.scan_depth
)


#: ``scan_klines(data, start, threads)`` when compiled, else ``None``: the columns of the
#: kline rows of ``data`` (any buffer) from byte ``start`` (``(span_ns, open_ns, end_ns,
#: trades, 4 coefficients, 4 scales, closes)``, each a bytes of machine values), read in
#: up to ``threads`` parts at once, or ``None`` for any file it does not read exactly as the
#: Python reader (``_history.c``), which the caller then reads so.
scan_klines: Callable[[Any, int, int], tuple[Any, ...] | None] | None = (
    None if _compiled is None else _compiled.scan_klines
)

#: ``sma_crossover(closes, short, long, equal_within)`` when compiled, else ``None``: the
#: decisions ``(index, side, short average, long average)`` (side 1: BUY, -1: SELL) that
#: :class:`~algotrade.domain.strategy.SmaCrossover` takes over a buffer of closes, the
#: same floating-point operations in the same order.
sma_crossover: Callable[[Any, int, int, float], list[tuple[int, int, float, float]]] | None = (
    None if _compiled is None else _compiled.sma_crossover
)

#: The equity curve and its figures over columns of bars, compiled, else ``None``.
curve_kernel: CompiledCurve | None = None if _compiled is None else CompiledCurve(_compiled)

#: The compiled book's class when built, else ``None``.
compiled_book: type[Book] | None = None if _compiled is None else _compiled.Book


def synchronizer(symbol: str, **options: Any) -> BookSynchronizer:
    """Return a :class:`BookSynchronizer` on the compiled book and copier when built."""
    if _compiled is None:
        return BookSynchronizer(symbol, **options)
    return BookSynchronizer(symbol, book=_compiled.Book(), applied=_compiled.applied, **options)


def forget() -> None:
    """Empty the compiled module's decimals cached by text (benchmarks of cold parsing)."""
    if _compiled is not None:
        _compiled.forget()


__all__ = [
    "COMPILED", "compiled_book", "curve_kernel", "forget", "scan_depth", "scan_klines",
    "sma_crossover", "synchronizer",
]  # fmt: skip
