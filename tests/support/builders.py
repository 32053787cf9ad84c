"""Small builders of domain events for tests."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from algotrade.domain.events import BarClosed, BookSnapshotTaken, DepthDiffReceived
from algotrade.domain.streams import depth_stream
from algotrade.domain.values import PriceLevel

D = Decimal


def levels(*pairs: tuple[str, str]) -> tuple[PriceLevel, ...]:
    """Return price levels from string pairs."""
    return tuple((D(p), D(q)) for p, q in pairs)


def diff(
    first: int,
    final: int,
    bids: Sequence[tuple[str, str]] = (),
    asks: Sequence[tuple[str, str]] = (),
    *,
    symbol: str = "BTCUSDT",
    ts: int = 0,
) -> DepthDiffReceived:
    """Return a depth diff covering update ids ``first..final``."""
    return DepthDiffReceived(
        stream=depth_stream(symbol),
        version=0,
        exchange_ts=ts,
        receive_ts=ts,
        exchange="test",
        symbol=symbol,
        first_update_id=first,
        final_update_id=final,
        bids=levels(*bids),
        asks=levels(*asks),
    )


def snapshot(
    last: int,
    bids: Sequence[tuple[str, str]] = (("100", "1"),),
    asks: Sequence[tuple[str, str]] = (("101", "1"),),
    *,
    symbol: str = "BTCUSDT",
    ts: int = 0,
) -> BookSnapshotTaken:
    """Return a book snapshot at ``lastUpdateId`` ``last``."""
    return BookSnapshotTaken(
        stream=depth_stream(symbol),
        version=0,
        exchange_ts=ts,
        receive_ts=ts,
        exchange="test",
        symbol=symbol,
        last_update_id=last,
        bids=levels(*bids),
        asks=levels(*asks),
    )


def bar(close: float | str, index: int, *, symbol: str = "BTCUSDT") -> BarClosed:
    """Return the ``index``-th one-minute bar closing at ``close``."""
    minute = 60_000_000_000
    price = D(str(close))
    return BarClosed(
        stream=f"bars-{symbol}-1m",
        version=index + 1,
        exchange_ts=(index + 1) * minute,
        receive_ts=(index + 1) * minute,
        symbol=symbol,
        interval="1m",
        open_time=index * minute,
        close_time=(index + 1) * minute,
        open=price,
        high=price,
        low=price,
        close=price,
        updates=1,
        last_position=index + 1,
    )
