"""Signal <-> Redis stream entry fields, with a schema version.

Fields (all strings): ``schema`` (this module's :data:`SCHEMA_VERSION`), ``signal_id``,
``symbol``, ``side`` (``BUY``/``SELL``), ``price`` (decimal string), ``short_sma`` and
``long_sma``, ``bar_time`` and ``emitted_at`` (nanoseconds since the epoch), ``interval``,
``strategy``, ``params`` (JSON object), ``indicators`` (JSON object of numbers), the order
intent ``size_kind``, ``size`` and ``limit_offset_bps`` (empty: the trader's settings; an
entry of an older producer has none of these four), plus ``stream`` and ``version``: where
the signal sits in the event store.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

import orjson

from algotrade.domain.errors import InvalidInputError
from algotrade.domain.events import SignalEmitted
from algotrade.domain.values import Side, decimal_text, indicator_values, param_values

SCHEMA_VERSION = "1"


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
        "indicators": orjson.dumps(dict(signal.indicators)).decode(),
        "size_kind": signal.size_kind,
        "size": "" if signal.size is None else decimal_text(signal.size),
        "limit_offset_bps": ""
        if signal.limit_offset_bps is None
        else decimal_text(signal.limit_offset_bps),
        "stream": signal.stream,
        "version": str(signal.version),
    }


_INTS = ("version", "emitted_at", "received_at", "bar_time")
_FLOATS = ("short_sma", "long_sma")
_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}


def _optional_decimal(fields: dict[str, str], name: str) -> Decimal | None:
    """Return an optional decimal field: ``None`` when absent or empty."""
    text = fields.get(name, "")
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidInputError(f"field {name!r} is not a decimal: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise InvalidInputError(f"field {name!r} must be a non-negative decimal, got {text!r}")
    return value


def _texts(raw: dict[bytes | str, bytes | str]) -> dict[str, str]:
    """Return the entry with text keys and values (as they come from a decoding client)."""
    if all(k.__class__ is str and v.__class__ is str for k, v in raw.items()):
        return raw  # type: ignore[return-value]  # checked just above: all text
    try:
        return {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
    except UnicodeDecodeError:
        raise InvalidInputError("entry is not UTF-8 text") from None


def _numbers(fields: dict[str, str]) -> tuple[list[int], list[float]]:
    """Return the integer and float fields, or say which one is not a number."""
    ints = []
    for key in _INTS:
        try:
            ints.append(int(fields[key]))
        except ValueError:
            raise InvalidInputError(f"field {key!r} is not an integer: {fields[key]!r}") from None
    floats = []
    for key in _FLOATS:
        text = fields[key]
        try:
            value = float(text)
        except ValueError:
            raise InvalidInputError(f"field {key!r} is not a number: {text!r}") from None
        if not math.isfinite(value):
            raise InvalidInputError(f"field {key!r} is not finite: {text!r}")
        floats.append(value)
    return ints, floats


def signal_from_fields(raw: dict[bytes | str, bytes | str], *, text: bool = False) -> SignalEmitted:
    """Rebuild a signal from a stream entry (keys and values as bytes or text; ``text``:
    the caller knows them to be text, as a decoding Redis client returns them).

    Raises:
        InvalidInputError: a missing field, a bad number, an unknown side or schema version.
    """
    fields: dict[str, str] = raw if text else _texts(raw)  # type: ignore[assignment]
    try:
        schema = fields["schema"]
        if schema != SCHEMA_VERSION:
            raise InvalidInputError(f"unknown schema version {schema!r} (this trader reads 1)")
        side = _SIDES.get(fields["side"])
        if side is None:
            raise InvalidInputError(f"unknown side {fields['side']!r}")
        try:
            price = Decimal(fields["price"])
        except InvalidOperation:
            raise InvalidInputError(
                f"field 'price' is not a decimal: {fields['price']!r}"
            ) from None
        if not price.is_finite() or price <= 0:
            raise InvalidInputError(f"field 'price' must be positive, got {price}")
        try:
            params = orjson.loads(fields["params"])
            if not isinstance(params, dict) or not all(
                v.__class__ in (int, float, str, bool) for v in params.values()
            ):
                raise TypeError(params)
            pairs = param_values(params)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            raise InvalidInputError(
                "field 'params' is not a JSON object of numbers, strings or booleans"
            ) from None
        try:  # absent from the entries of producers older than it: none
            raw_indicators = orjson.loads(fields.get("indicators") or "{}")
            if not isinstance(raw_indicators, dict) or not all(
                v.__class__ in (int, float) for v in raw_indicators.values()
            ):
                raise TypeError(raw_indicators)
            indicators = indicator_values(raw_indicators)
        except (orjson.JSONDecodeError, TypeError, InvalidInputError):
            raise InvalidInputError("field 'indicators' is not a JSON object of numbers") from None
        size_kind = fields.get("size_kind", "")  # absent from older producers' entries
        if size_kind not in ("", "quantity", "quote", "fraction"):
            raise InvalidInputError(f"field 'size_kind' is not a sizing: {size_kind!r}")
        size, offset = (
            _optional_decimal(fields, "size"),
            _optional_decimal(fields, "limit_offset_bps"),
        )
        signal_id = fields["signal_id"]
        if not signal_id:
            raise InvalidInputError("field 'signal_id' is empty")
        (version, emitted_at, received_at, bar_time), (short_sma, long_sma) = _numbers(fields)
        return SignalEmitted(
            stream=fields["stream"],
            version=version,
            exchange_ts=emitted_at,
            receive_ts=received_at,
            signal_id=signal_id,
            symbol=fields["symbol"],
            interval=fields["interval"],
            side=side,
            price=price,
            short_sma=short_sma,
            long_sma=long_sma,
            bar_time=bar_time,
            strategy=fields["strategy"],
            params=pairs,
            indicators=indicators,
            size_kind=size_kind,
            size=size,
            limit_offset_bps=offset,
        )
    except KeyError as e:
        raise InvalidInputError(f"missing field {e.args[0]!r}") from None
