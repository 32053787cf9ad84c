"""Stored-event envelope: domain events to and from JSON documents.

One place translates every event type. Decimals travel as strings (exact), levels as
``[price, quantity]`` string pairs, the top of book as ``[bid, bid_qty, ask, ask_qty]``,
enums as their values. ``stream`` and ``version`` are not part of the document: the
store keeps them in their own columns or fields.

Market events, most of the log, use Binance's one-letter keys (``E`` exchange time, ``U``
and ``u`` update ids, ``b`` and ``a`` levels, ...) plus ``R`` for the receive time, ``x``
for the exchange and ``t`` for the top of book: about a third fewer bytes to write and
keep. Every other event uses its field names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import typing
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import orjson

from algotrade.adapters.decimals import decimal_of, levels_of
from algotrade.domain import events as ev
from algotrade.domain import values
from algotrade.domain.errors import InvalidInputError

EVENT_TYPES: dict[str, type[ev.Event]] = {
    cls.__name__: cls
    for cls in (
        ev.DepthDiffReceived,
        ev.BookSnapshotTaken,
        ev.TradeReceived,
        ev.SequenceGapDetected,
        ev.BarClosed,
        ev.SignalEmitted,
        ev.OrderPlaced,
        ev.OrderFilled,
        ev.OrderRejected,
        ev.OrderUpdated,
        ev.PositionChanged,
        ev.TradingHalted,
        ev.TradingResumed,
    )
}

_Conv = Callable[[Any], Any]


def _levels_out(levels: tuple[values.PriceLevel, ...]) -> list[list[str]]:
    return [[str(p), str(q)] for p, q in levels]


def _top_out(top: values.TopOfBook | None) -> list[str] | None:
    if top is None:
        return None
    return [str(top.bid_price), str(top.bid_qty), str(top.ask_price), str(top.ask_qty)]


def _top_in(raw: list[str] | None) -> values.TopOfBook | None:
    if raw is None:
        return None
    bid, bid_qty, ask, ask_qty = raw
    return values.TopOfBook(
        decimal_of(bid), decimal_of(bid_qty), decimal_of(ask), decimal_of(ask_qty)
    )


def _params_out(params: values.Params) -> list[list[object]]:
    return [[k, v] for k, v in params]


def _params_in(raw: list[list[Any]]) -> values.Params:
    return values.param_values(raw)


def _indicators_out(indicators: values.Indicators) -> list[list[object]]:
    return [[k, v] for k, v in indicators]


def _indicators_in(raw: list[list[Any]]) -> values.Indicators:
    return values.indicator_values(raw)


def _same(x: Any) -> Any:
    return x


def _opt_decimal_out(x: Decimal | None) -> str | None:
    return None if x is None else str(x)


def _opt_decimal_in(x: str | None) -> Decimal | None:
    return None if x is None else Decimal(x)


_BY_TYPE: dict[object, tuple[_Conv, _Conv]] = {
    Decimal: (str, Decimal),
    Decimal | None: (_opt_decimal_out, _opt_decimal_in),
    int: (_same, int),
    float: (_same, float),
    str: (_same, str),
    bool: (_same, bool),
    values.Side: (str, values.Side),
    values.GapReason: (str, values.GapReason),
    values.OrderStatus: (str, values.OrderStatus),
    tuple[values.PriceLevel, ...]: (_levels_out, levels_of),
    values.TopOfBook | None: (_top_out, _top_in),
    values.Params: (_params_out, _params_in),
    values.Indicators: (_indicators_out, _indicators_in),
}


def converters(hint: object) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Return the (to document, from document) converters of a field's type."""
    return _BY_TYPE[hint]


_SKIP = frozenset({"stream", "version"})

#: Document keys of market events (field name -> key); other events use field names.
KEYS: dict[type[ev.Event], dict[str, str]] = {
    ev.DepthDiffReceived: {
        "exchange_ts": "E", "receive_ts": "R", "exchange": "x", "symbol": "s",
        "first_update_id": "U", "final_update_id": "u", "bids": "b", "asks": "a", "top": "t",
    },
    ev.BookSnapshotTaken: {
        "exchange_ts": "E", "receive_ts": "R", "exchange": "x", "symbol": "s",
        "last_update_id": "lastUpdateId", "bids": "b", "asks": "a", "top": "t",
    },
    ev.TradeReceived: {
        "exchange_ts": "E", "receive_ts": "R", "exchange": "x", "symbol": "s",
        "trade_id": "a", "price": "p", "quantity": "q", "buyer_is_maker": "m",
    },
}  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class _Schema:
    cls: type[ev.Event]
    fields: tuple[tuple[str, str, _Conv, _Conv], ...]  # (field, document key, out, in)
    defaults: dict[str, Any]  # document key -> default of the fields that have one


def _schema(cls: type[ev.Event]) -> _Schema:
    hints = typing.get_type_hints(cls, vars(ev))
    keys = KEYS.get(cls, {})
    fields = []
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in _SKIP:
            continue
        out, inp = _BY_TYPE[hints[f.name]]
        key = keys.get(f.name, f.name)
        fields.append((f.name, key, out, inp))
        if f.default is not dataclasses.MISSING:
            # A field added later has a default: documents stored before it still decode.
            defaults[key] = out(f.default)
    return _Schema(cls, tuple(fields), defaults)


_SCHEMAS: dict[str, _Schema] = {name: _schema(cls) for name, cls in EVENT_TYPES.items()}


def type_name(cls: type[ev.Event]) -> str:
    """Return the stored name of an event class."""
    return cls.__name__


def _depth_dict(e: ev.DepthDiffReceived) -> dict[str, Any]:
    # The hot path: most stored events are depth diffs, so they skip the generic schema walk.
    top = e.top
    return {
        "E": e.exchange_ts,
        "R": e.receive_ts,
        "x": e.exchange,
        "s": e.symbol,
        "U": e.first_update_id,
        "u": e.final_update_id,
        "b": [[str(p), str(q)] for p, q in e.bids],
        "a": [[str(p), str(q)] for p, q in e.asks],
        "t": None
        if top is None
        else [str(top.bid_price), str(top.bid_qty), str(top.ask_price), str(top.ask_qty)],
    }


def _trade_dict(e: ev.TradeReceived) -> dict[str, Any]:
    return {
        "E": e.exchange_ts,
        "R": e.receive_ts,
        "x": e.exchange,
        "s": e.symbol,
        "a": e.trade_id,
        "p": str(e.price),
        "q": str(e.quantity),
        "m": e.buyer_is_maker,
    }


def to_dict(event: ev.Event) -> dict[str, Any]:
    """Return the JSON-ready document of an event (without stream and version)."""
    cls = type(event)
    if cls is ev.DepthDiffReceived:
        return _depth_dict(event)  # type: ignore[arg-type]  # checked just above
    if cls is ev.TradeReceived:
        return _trade_dict(event)  # type: ignore[arg-type]  # checked just above
    schema = _SCHEMAS[type(event).__name__]
    return {key: out(getattr(event, name)) for name, key, out, _ in schema.fields}


def encode(event: ev.Event) -> bytes:
    """Return the stored JSON bytes of an event (without stream and version)."""
    return orjson.dumps(to_dict(event))


def from_dict(
    type_: str, stream: str, version: int, doc: dict[str, Any], *, levels: bool = True
) -> ev.Event:
    """Rebuild an event from its stored document (a depth diff without its levels when
    ``levels`` is false: see ``EventStore.read_all``).

    Raises:
        InvalidInputError: unknown type or a document that does not fit it.
    """
    schema = _SCHEMAS.get(type_)
    if schema is None:
        raise InvalidInputError(f"unknown event type {type_!r}")
    try:
        if type_ == "DepthDiffReceived":  # the hot path, as in to_dict
            return _depth_event(stream, version, doc, levels)
        if type_ == "TradeReceived":
            return _trade_event(stream, version, doc)
        if schema.defaults:
            doc = {**schema.defaults, **doc}
        kwargs = {name: inp(doc[key]) for name, key, _, inp in schema.fields}
        return schema.cls(stream=stream, version=version, **kwargs)
    except (KeyError, TypeError, ValueError, ArithmeticError) as e:
        raise InvalidInputError(f"stored {type_} at {stream}@{version} is malformed: {e!r}") from e


def _depth_event(
    stream: str, version: int, doc: dict[str, Any], levels: bool = True
) -> ev.DepthDiffReceived:
    return ev.DepthDiffReceived(
        stream=stream,
        version=version,
        exchange_ts=int(doc["E"]),
        receive_ts=int(doc["R"]),
        exchange=str(doc["x"]),
        symbol=str(doc["s"]),
        first_update_id=int(doc["U"]),
        final_update_id=int(doc["u"]),
        bids=levels_of(doc["b"]) if levels else (),
        asks=levels_of(doc["a"]) if levels else (),
        top=_top_in(doc.get("t")),  # absent from documents stored before it existed
    )


def _trade_event(stream: str, version: int, doc: dict[str, Any]) -> ev.TradeReceived:
    return ev.TradeReceived(
        stream=stream,
        version=version,
        exchange_ts=int(doc["E"]),
        receive_ts=int(doc["R"]),
        exchange=str(doc["x"]),
        symbol=str(doc["s"]),
        trade_id=int(doc["a"]),
        price=decimal_of(doc["p"]),
        quantity=decimal_of(doc["q"]),
        buyer_is_maker=bool(doc["m"]),
    )


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector out of bulk work that creates no cycles.

    Decoding a page of stored events makes thousands of documents, each a dict of lists,
    all alive until their events are built: every young-generation collection on the way
    traverses them again, for nothing (reference counting frees them). Measured on a
    SQLite store of synthetic market data: collections took about 40% of reading it.
    Backtests pause it for their whole run. Nothing inside the pause may await (other
    tasks would run with the collector off); an outer pause is kept.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def decode(type_: str, stream: str, version: int, data: bytes | str) -> ev.Event:
    """Rebuild an event from its stored JSON bytes."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise InvalidInputError(f"stored {type_} at {stream}@{version} is not JSON: {e}") from e
    return from_dict(type_, stream, version, doc)
