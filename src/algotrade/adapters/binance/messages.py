"""Binance spot wire schemas: combined-stream frames and REST bodies into domain events.

Prices and quantities are parsed from Binance's decimal strings into ``Decimal``; a frame
that does not fit its schema raises :class:`~algotrade.domain.errors.InvalidInputError` naming
what is wrong, so the caller can count it and set it aside.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import orjson

from algotrade.adapters.decimals import levels_of
from algotrade.adapters.speedups import scan_depth
from algotrade.domain.errors import InvalidInputError
from algotrade.domain.events import BookSnapshotTaken, DepthDiffReceived, MarketEvent, TradeReceived
from algotrade.domain.rules import SymbolRules
from algotrade.domain.streams import depth_stream, trade_stream
from algotrade.domain.values import PriceLevel

EXCHANGE = "binance"
T = TypeVar("T")
_MS = 1_000_000

#: Stream kinds recognised but not turned into events (yet).
IGNORED_STREAMS = frozenset({"kline_1m", "kline", "bookTicker", "ticker", "miniTicker"})


def _levels(raw: Any, what: str) -> tuple[PriceLevel, ...]:
    try:
        return levels_of(raw)
    except (ValueError, TypeError, InvalidOperation) as e:
        if type(raw) is not list:
            raise InvalidInputError(
                f"{what} must be a list of [price, quantity], got {type(raw).__name__}"
            ) from None
        raise InvalidInputError(f"{what} has a malformed level: {e!r}") from e


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if type(value) is not int:
        raise InvalidInputError(f"field {key!r} must be an integer, got {value!r}")
    return value


def _decimal(data: dict[str, Any], key: str) -> Decimal:
    value = data.get(key)
    if not isinstance(value, str):
        raise InvalidInputError(f"field {key!r} must be a decimal string, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation as e:
        raise InvalidInputError(f"field {key!r} is not a decimal: {value!r}") from e
    if not number.is_finite():
        raise InvalidInputError(f"field {key!r} is not a finite decimal: {value!r}")
    return number


def _symbol(data: dict[str, Any]) -> str:
    symbol = data.get("s")
    if not isinstance(symbol, str) or not symbol:
        raise InvalidInputError(f"field 's' must be a symbol, got {symbol!r}")
    return symbol


def parse_frame(text: str | bytes, receive_ts: int) -> MarketEvent | None:
    """Translate one combined-stream frame; ``None`` for a recognised stream we ignore.

    A depth frame as Binance writes it goes through the compiled scanner when it was built
    (``algotrade.adapters.speedups``); every other frame, and every frame without it,
    through :func:`parse_frame_python`. Both give the same event.

    Raises:
        InvalidInputError: the frame is not JSON, names an unknown stream or lacks a field.
    """
    if scan_depth is not None and (event := scan_depth(text, receive_ts)) is not None:
        return event
    return parse_frame_python(text, receive_ts)


def parse_frame_python(text: str | bytes, receive_ts: int) -> MarketEvent | None:
    """:func:`parse_frame` in Python only: any JSON spelling, and the errors.

    Raises:
        InvalidInputError: the frame is not JSON, names an unknown stream or lacks a field.
    """
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise InvalidInputError(f"frame is not JSON: {e}") from e
    if not isinstance(frame, dict) or not isinstance(frame.get("data"), dict):
        raise InvalidInputError("frame is not a combined-stream object with a 'data' object")
    stream = frame.get("stream")
    if not isinstance(stream, str) or "@" not in stream:
        raise InvalidInputError(f"frame names no stream: {stream!r}")
    kind = stream.split("@", 1)[1]
    data = frame["data"]
    if kind.startswith("depth"):
        return parse_depth_update(data, receive_ts)
    if kind == "aggTrade":
        return parse_agg_trade(data, receive_ts)
    if kind in IGNORED_STREAMS or kind.startswith("kline_"):
        return None
    raise InvalidInputError(f"unknown stream {stream!r}")


def parse_depth_update(data: dict[str, Any], receive_ts: int) -> DepthDiffReceived:
    """Translate a ``depthUpdate`` payload."""
    if data.get("e") != "depthUpdate":
        raise InvalidInputError(f"expected a depthUpdate event, got {data.get('e')!r}")
    symbol = _symbol(data)
    first, final = _int(data, "U"), _int(data, "u")
    if first > final:
        raise InvalidInputError(f"first update id {first} is above final update id {final}")
    return DepthDiffReceived(
        stream=depth_stream(symbol),
        version=0,
        exchange_ts=_int(data, "E") * _MS,
        receive_ts=receive_ts,
        exchange=EXCHANGE,
        symbol=symbol,
        first_update_id=first,
        final_update_id=final,
        bids=_levels(data.get("b"), "b"),
        asks=_levels(data.get("a"), "a"),
    )


def parse_agg_trade(data: dict[str, Any], receive_ts: int) -> TradeReceived:
    """Translate an ``aggTrade`` payload."""
    if data.get("e") != "aggTrade":
        raise InvalidInputError(f"expected an aggTrade event, got {data.get('e')!r}")
    symbol = _symbol(data)
    maker = data.get("m")
    if not isinstance(maker, bool):
        raise InvalidInputError(f"field 'm' must be a boolean, got {maker!r}")
    return TradeReceived(
        stream=trade_stream(symbol),
        version=0,
        exchange_ts=_int(data, "T") * _MS,
        receive_ts=receive_ts,
        exchange=EXCHANGE,
        symbol=symbol,
        trade_id=_int(data, "a"),
        price=_decimal(data, "p"),
        quantity=_decimal(data, "q"),
        buyer_is_maker=maker,
    )


def retry_after(headers: Mapping[str, str], default: float) -> float:
    """Return the seconds a 429/418 answer asks to wait (``Retry-After``); ``default`` when
    the header is absent or not a finite, non-negative number of seconds (HTTP also allows
    a date, which Binance does not send)."""
    value = headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else default
    except ValueError:
        return default
    return seconds if math.isfinite(seconds) and seconds >= 0 else default


def _json_body(body: str | bytes, kind: type[T], what: str) -> T:
    """Decode a REST body that must be a JSON object or list."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInputError(f"{what} is not JSON: {e}") from e
    if not isinstance(data, kind):
        raise InvalidInputError(f"{what} is not a JSON {kind.__name__}")
    return data


def parse_depth_snapshot(symbol: str, body: str | bytes, receive_ts: int) -> BookSnapshotTaken:
    """Translate a ``GET /api/v3/depth`` response body.

    The snapshot has no exchange time; its receive time stands in for it.

    Raises:
        InvalidInputError: the body is not a depth snapshot.
    """
    data = _json_body(body, dict, "depth snapshot")
    return BookSnapshotTaken(
        stream=depth_stream(symbol),
        version=0,
        exchange_ts=receive_ts,
        receive_ts=receive_ts,
        exchange=EXCHANGE,
        symbol=symbol,
        last_update_id=_int(data, "lastUpdateId"),
        bids=_levels(data.get("bids"), "bids"),
        asks=_levels(data.get("asks"), "asks"),
    )


def parse_rest_agg_trades(symbol: str, body: str | bytes, receive_ts: int) -> list[TradeReceived]:
    """Translate a ``GET /api/v3/aggTrades`` response body (a list of aggregate trades).

    Raises:
        InvalidInputError: the body is not a list of aggregate trades.
    """
    data = _json_body(body, list, "aggTrades body")
    out = []
    for item in data:
        if not isinstance(item, dict):
            raise InvalidInputError(f"aggTrades item is not an object: {item!r}")
        out.append(parse_agg_trade({**item, "e": "aggTrade", "s": symbol}, receive_ts))
    return out


def parse_symbol_rules(symbol: str, body: bytes | str) -> SymbolRules:
    """Return one symbol's order filters from an ``/api/v3/exchangeInfo`` answer.

    Raises:
        InvalidInputError: the answer is malformed or does not list the symbol.
    """
    try:
        info = orjson.loads(body)
        entry = next(s for s in info["symbols"] if s["symbol"] == symbol)
        filters = {f["filterType"]: f for f in entry["filters"]}
    except (orjson.JSONDecodeError, KeyError, TypeError, StopIteration):
        raise InvalidInputError(f"exchangeInfo without the filters of {symbol}") from None

    def number(kind: str, name: str) -> Decimal:
        value = filters.get(kind, {}).get(name, "0")
        try:
            found = Decimal(str(value))
        except InvalidOperation:
            raise InvalidInputError(
                f"exchangeInfo {kind}.{name} {value!r} is not a number"
            ) from None
        if not found.is_finite() or found < 0:
            raise InvalidInputError(f"exchangeInfo {kind}.{name} {value!r} is not a number")
        return found

    notional = "NOTIONAL" if "NOTIONAL" in filters else "MIN_NOTIONAL"
    return SymbolRules(
        symbol=symbol,
        tick_size=number("PRICE_FILTER", "tickSize"),
        step_size=number("LOT_SIZE", "stepSize"),
        min_qty=number("LOT_SIZE", "minQty"),
        max_qty=number("LOT_SIZE", "maxQty"),
        market_step_size=number("MARKET_LOT_SIZE", "stepSize"),
        market_min_qty=number("MARKET_LOT_SIZE", "minQty"),
        market_max_qty=number("MARKET_LOT_SIZE", "maxQty"),
        min_notional=number(notional, "minNotional"),
        max_notional=number("NOTIONAL", "maxNotional"),
    )
