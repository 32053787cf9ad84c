"""Stream names are written and read in one place: each builder's name reads back."""

from __future__ import annotations

import pytest

from algotrade.domain.errors import InvalidInputError
from algotrade.domain.processing import signal_stream
from algotrade.domain.strategy import SmaCrossover
from algotrade.domain.streams import (
    CONTROL_STREAM,
    StreamKind,
    bar_stream,
    depth_stream,
    order_stream,
    position_stream,
    stream_kind,
    stream_symbol,
    trade_stream,
)


@pytest.mark.parametrize(
    ("name", "kind", "symbol"),
    [
        (depth_stream("BTCUSDT"), StreamKind.DEPTH, "BTCUSDT"),
        (trade_stream("ETHUSDT"), StreamKind.TRADES, "ETHUSDT"),
        (bar_stream("BTCUSDT", "1m"), StreamKind.BARS, "BTCUSDT"),
        (signal_stream("BTCUSDT", "1d", SmaCrossover(50, 200)), StreamKind.SIGNALS, "BTCUSDT"),
        (position_stream("SOLUSDT"), StreamKind.POSITION, "SOLUSDT"),
    ],
)
def test_a_symbols_stream_names_its_kind_and_symbol(
    name: str, kind: StreamKind, symbol: str
) -> None:
    """Every stream of a symbol reads back as its kind and that symbol."""
    assert (stream_kind(name), stream_symbol(name)) == (kind, symbol)


def test_market_and_derived_kinds() -> None:
    """Depth and trades are market data; bars and signals are what the processor writes."""
    assert {k for k in StreamKind if k.market} == {StreamKind.DEPTH, StreamKind.TRADES}
    assert {k for k in StreamKind if k.derived} == {StreamKind.BARS, StreamKind.SIGNALS}


def test_other_names() -> None:
    """Order and control streams have a kind and no symbol; a foreign name has neither."""
    assert stream_kind(order_stream("abc-1")) is StreamKind.ORDER
    assert stream_kind(CONTROL_STREAM) is StreamKind.CONTROL
    assert stream_kind("depthless") is None
    assert stream_kind("misc-BTCUSDT") is None
    for name in (order_stream("abc-1"), CONTROL_STREAM, "misc-BTCUSDT", "depth-"):
        with pytest.raises(InvalidInputError, match="not the stream of a symbol"):
            stream_symbol(name)
