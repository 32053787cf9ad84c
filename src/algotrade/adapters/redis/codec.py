"""Signal <-> Redis stream entry fields, with a schema version.

Fields (all strings): ``schema`` (this module's :data:`SCHEMA_VERSION`), ``signal_id``,
``symbol``, ``side`` (``BUY``/``SELL``), ``price`` (decimal string), ``short_sma`` and
``long_sma``, ``bar_time`` and ``emitted_at`` (nanoseconds since the epoch), ``interval``,
``strategy``, ``params`` (JSON object), plus ``stream`` and ``version``: where the signal
sits in the event store.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

import orjson

from algotrade.domain.errors import InvalidInputError
from algotrade.domain.events import Side, SignalEmitted

SCHEMA_VERSION = "1"
_REQUIRED = (
    "schema", "signal_id", "symbol", "side", "price", "short_sma", "long_sma", "bar_time",
    "emitted_at", "received_at", "interval", "strategy", "params", "stream", "version",
)  # fmt: skip


def signal_to_fields(signal: SignalEmitted) -> dict[str, str]:
    """Return the stream entry of a signal."""
    return {
        "schema": SCHEMA_VERSION,
        "signal_id": signal.signal_id,
        "symbol": signal.symbol,
        "side": str(signal.side),
        "price": str(signal.price),
        "short_sma": repr(signal.short_sma),
        "long_sma": repr(signal.long_sma),
        "bar_time": str(signal.bar_time),
        "emitted_at": str(signal.exchange_ts),
        "received_at": str(signal.receive_ts),
        "interval": signal.interval,
        "strategy": signal.strategy,
        "params": orjson.dumps(dict(signal.params)).decode(),
        "stream": signal.stream,
        "version": str(signal.version),
    }


def _text(fields: dict[str, str], key: str) -> str:
    value = fields.get(key)
    if value is None:
        raise InvalidInputError(f"missing field {key!r}")
    return value


def _int(fields: dict[str, str], key: str) -> int:
    text = _text(fields, key)
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"field {key!r} is not an integer: {text!r}") from None


def _float(fields: dict[str, str], key: str) -> float:
    text = _text(fields, key)
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"field {key!r} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise InvalidInputError(f"field {key!r} is not finite: {text!r}")
    return value


def signal_from_fields(raw: dict[bytes | str, bytes | str]) -> SignalEmitted:
    """Rebuild a signal from a stream entry (keys and values as bytes or text).

    Raises:
        InvalidInputError: a missing field, a bad number, an unknown side or schema version.
    """
    try:
        fields = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
    except UnicodeDecodeError:
        raise InvalidInputError("entry is not UTF-8 text") from None
    schema = _text(fields, "schema")
    if schema != SCHEMA_VERSION:
        raise InvalidInputError(f"unknown schema version {schema!r} (this trader reads 1)")
    side = _text(fields, "side")
    if side not in (Side.BUY, Side.SELL):
        raise InvalidInputError(f"unknown side {side!r}")
    try:
        price = Decimal(_text(fields, "price"))
    except InvalidOperation:
        raise InvalidInputError(
            f"field 'price' is not a decimal: {_text(fields, 'price')!r}"
        ) from None
    if not price.is_finite() or price <= 0:
        raise InvalidInputError(f"field 'price' must be positive, got {price}")
    try:
        params = orjson.loads(_text(fields, "params"))
        pairs = tuple((str(k), int(v)) for k, v in params.items())
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        raise InvalidInputError("field 'params' is not a JSON object of integers") from None
    signal_id = _text(fields, "signal_id")
    if not signal_id:
        raise InvalidInputError("field 'signal_id' is empty")
    return SignalEmitted(
        stream=_text(fields, "stream"),
        version=_int(fields, "version"),
        exchange_ts=_int(fields, "emitted_at"),
        receive_ts=_int(fields, "received_at"),
        signal_id=signal_id,
        symbol=_text(fields, "symbol"),
        interval=_text(fields, "interval"),
        side=Side(side),
        price=price,
        short_sma=_float(fields, "short_sma"),
        long_sma=_float(fields, "long_sma"),
        bar_time=_int(fields, "bar_time"),
        strategy=_text(fields, "strategy"),
        params=pairs,
    )
