"""Stream names: what each event stream is called, and what a name says.

A stream name is ``<kind>-<key>``: ``depth-BTCUSDT``, ``trades-BTCUSDT``,
``bars-BTCUSDT-1m``, ``signals-BTCUSDT-1m-sma_crossover-50-200``, ``order-<order id>``,
``position-BTCUSDT``, ``control-trading``. The builders below write them; :func:`stream_kind`
and :func:`stream_symbol` read them, so that no caller parses a name by hand.
"""

from __future__ import annotations

from enum import StrEnum

from algotrade.domain.errors import InvalidInputError


class StreamKind(StrEnum):
    """What a stream holds: the first part of its name."""

    DEPTH = "depth"
    TRADES = "trades"
    BARS = "bars"
    SIGNALS = "signals"
    ORDER = "order"
    POSITION = "position"
    CONTROL = "control"

    @property
    def market(self) -> bool:
        """Whether the stream holds market data (depth events or trades)."""
        return self in (StreamKind.DEPTH, StreamKind.TRADES)

    @property
    def derived(self) -> bool:
        """Whether the processor writes the stream (bars and signals)."""
        return self in (StreamKind.BARS, StreamKind.SIGNALS)


_KINDS = {kind.value: kind for kind in StreamKind}


def stream_kind(name: str) -> StreamKind | None:
    """Return what the stream ``name`` holds (``None``: a name no builder here writes)."""
    return _KINDS.get(name.partition("-")[0])


def stream_symbol(name: str) -> str:
    """Return the symbol of a depth, trades, bars, signals or position stream.

    Raises:
        InvalidInputError: the stream is not one of a symbol.
    """
    kind, _, rest = name.partition("-")
    if _KINDS.get(kind) in (None, StreamKind.ORDER, StreamKind.CONTROL) or not rest:
        raise InvalidInputError(f"{name!r} is not the stream of a symbol")
    return rest.partition("-")[0]


def depth_stream(symbol: str) -> str:
    """Return the stream of a symbol's order-book events."""
    return f"depth-{symbol}"


def trade_stream(symbol: str) -> str:
    """Return the stream of a symbol's trades."""
    return f"trades-{symbol}"


def bar_stream(symbol: str, interval: str) -> str:
    """Return the stream of a symbol's closed bars of one interval."""
    return f"bars-{symbol}-{interval}"


def signal_stream_name(symbol: str, interval: str, strategy: str, params: str) -> str:
    """Return the stream of one strategy's signals (``params``: its values joined by
    ``-``) for one symbol and interval."""
    return f"signals-{symbol}-{interval}-{strategy}-{params}"


def order_stream(order_id: str) -> str:
    """Return the stream of one order's life."""
    return f"order-{order_id}"


#: The stream of the trading kill switch: ``TradingHalted`` / ``TradingResumed``.
CONTROL_STREAM = "control-trading"


def position_stream(symbol: str) -> str:
    """Return the stream of a symbol's position changes."""
    return f"position-{symbol}"
