"""Domain events to and from MongoDB documents, one readable field per event field.

Every document has the envelope ``_id`` (the event's natural id: ``depth:binance:BTCUSDT:<u>``
for a depth diff, the signal id for a signal, ``<order id>:placed`` for an order event, ...),
``position`` (global order), ``stream``, ``version``, ``type``, and two BSON dates,
``event_time`` (exchange time) and ``received_at`` (receive time); the exact nanoseconds are kept
too (``exchange_ts``, ``receive_ts``) because BSON dates stop at milliseconds. The store adds
``commit`` and ``stored_at`` (the append's range and time) as it writes.

Prices and quantities are decimal strings (exact; the MongoDB stand-in used in tests has no
Decimal128), price levels ``[price, quantity]`` pairs, the top of book ``best_bid`` and
``best_ask`` pairs. ``docs/storage.md`` lists every collection field by field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from collections.abc import Callable, Mapping
from typing import Any

from algotrade.adapters import codec
from algotrade.adapters.decimals import decimal_of, levels_of
from algotrade.domain import events as ev
from algotrade.domain import values
from algotrade.domain.errors import InvalidInputError
from algotrade.domain.streams import StreamKind, stream_kind

#: Collection of each stream family (the part of the stream name before the first ``-``).
COLLECTIONS: dict[StreamKind | None, str] = {
    StreamKind.DEPTH: "depth",
    StreamKind.TRADES: "trades",
    StreamKind.BARS: "bars",
    StreamKind.SIGNALS: "trade_signals",
    StreamKind.ORDER: "orders",
    StreamKind.POSITION: "positions",
}
#: Collection of streams of any other family.
OTHER = "events"

#: Collections that may hold each event type.
TYPE_COLLECTIONS: dict[type[ev.Event], tuple[str, ...]] = {
    ev.DepthDiffReceived: ("depth",),
    ev.BookSnapshotTaken: ("depth",),
    ev.SequenceGapDetected: ("depth", "trades"),
    ev.TradeReceived: ("trades",),
    ev.BarClosed: ("bars",),
    ev.SignalEmitted: ("trade_signals",),
    ev.OrderPlaced: ("orders",),
    ev.OrderFilled: ("orders",),
    ev.OrderRejected: ("orders",),
    ev.OrderUpdated: ("orders",),
    ev.PositionChanged: ("positions",),
    ev.TradingHalted: (OTHER,),
    ev.TradingResumed: (OTHER,),
}
ALL_COLLECTIONS: tuple[str, ...] = (*dict.fromkeys(COLLECTIONS.values()), OTHER)

#: ``status`` of the order documents, by event type.
#: (``OrderUpdated`` documents carry the status the exchange reported.)
ORDER_STATUS = {"OrderPlaced": "NEW", "OrderFilled": "FILLED", "OrderRejected": "REJECTED"}

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)


def collection_of(stream: str) -> str:
    """Return the collection that holds ``stream``."""
    return COLLECTIONS.get(stream_kind(stream), OTHER)


def as_date(ns: int) -> dt.datetime:
    """Return the BSON date (UTC, millisecond precision) of Unix nanoseconds."""
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def _top(doc: Mapping[str, Any]) -> values.TopOfBook | None:
    bid, ask = doc.get("best_bid"), doc.get("best_ask")
    if bid is None or ask is None:
        return None
    return values.TopOfBook(
        decimal_of(bid[0]), decimal_of(bid[1]), decimal_of(ask[0]), decimal_of(ask[1])
    )


def _depth_document(e: ev.DepthDiffReceived, position: int) -> dict[str, Any]:
    # The hot path: most documents are depth diffs, so they skip the generic field walk.
    top = e.top
    return {
        "_id": e.id,
        "position": position,
        "stream": e.stream,
        "version": e.version,
        "type": "DepthDiffReceived",
        "exchange": e.exchange,
        "symbol": e.symbol,
        "first_update_id": e.first_update_id,
        "final_update_id": e.final_update_id,
        "event_time": _EPOCH + dt.timedelta(microseconds=e.exchange_ts // 1000),
        "received_at": _EPOCH + dt.timedelta(microseconds=e.receive_ts // 1000),
        "exchange_ts": e.exchange_ts,
        "receive_ts": e.receive_ts,
        "bids": [[str(p), str(q)] for p, q in e.bids],
        "asks": [[str(p), str(q)] for p, q in e.asks],
        "best_bid": None if top is None else [str(top.bid_price), str(top.bid_qty)],
        "best_ask": None if top is None else [str(top.ask_price), str(top.ask_qty)],
    }


def _depth_event(doc: Mapping[str, Any], levels: bool = True) -> ev.DepthDiffReceived:
    return ev.DepthDiffReceived(
        stream=doc["stream"],
        version=doc["version"],
        exchange_ts=doc["exchange_ts"],
        receive_ts=doc["receive_ts"],
        exchange=doc["exchange"],
        symbol=doc["symbol"],
        first_update_id=doc["first_update_id"],
        final_update_id=doc["final_update_id"],
        bids=levels_of(doc["bids"]) if levels else (),
        asks=levels_of(doc["asks"]) if levels else (),
        top=_top(doc),
    )


_Conv = Callable[[Any], Any]
_ENVELOPE = frozenset({"stream", "version", "exchange_ts", "receive_ts"})


def _params_out(params: values.Params) -> dict[str, values.ParamValue]:
    return dict(params)


def _params_in(raw: Mapping[str, Any]) -> values.Params:
    return values.param_values(dict(raw))


def _fields(cls: type[ev.Event]) -> tuple[tuple[str, _Conv, _Conv], ...]:
    """Return (field, to document, from document) for the fields outside the envelope.

    A field with a default reads its default from a document stored before it existed.
    """
    hints = typing.get_type_hints(cls, vars(ev))
    out: list[tuple[str, _Conv, _Conv]] = []
    for f in dataclasses.fields(cls):
        if f.name in _ENVELOPE or f.name == "top":
            continue
        if cls is ev.SignalEmitted and f.name == "bar_time":
            continue  # stored as a BSON date and as nanoseconds, below
        hint = hints[f.name]
        to_doc: _Conv
        from_doc: _Conv
        if hint == values.Params:
            to_doc, from_doc = _params_out, _params_in
        else:
            to_doc, from_doc = codec.converters(hint)
        if f.default is not dataclasses.MISSING:
            from_doc = _or_default(from_doc, to_doc(f.default))
        else:
            from_doc = _required(f.name, from_doc)
        out.append((f.name, to_doc, from_doc))
    return tuple(out)


_MISSING = object()


def _or_default(convert: _Conv, default: Any) -> _Conv:
    def read(raw: Any) -> Any:
        return convert(default if raw is _MISSING else raw)

    return read


def _required(name: str, convert: _Conv) -> _Conv:
    def read(raw: Any) -> Any:
        if raw is _MISSING:
            raise KeyError(name)
        return convert(raw)

    return read


_SCHEMAS: dict[str, tuple[type[ev.Event], tuple[tuple[str, _Conv, _Conv], ...]]] = {
    name: (cls, _fields(cls)) for name, cls in codec.EVENT_TYPES.items()
}


def to_document(event: ev.Event, position: int) -> dict[str, Any]:
    """Return the document that stores ``event`` at ``position``."""
    if type(event) is ev.DepthDiffReceived:
        return _depth_document(event, position)
    name = type(event).__name__
    _, fields = _SCHEMAS[name]
    doc: dict[str, Any] = {
        "_id": event.id,
        "position": position,
        "stream": event.stream,
        "version": event.version,
        "type": name,
    }
    for field, to_doc, _ in fields:
        doc[field] = to_doc(getattr(event, field))
    doc["event_time"] = as_date(event.exchange_ts)
    doc["received_at"] = as_date(event.receive_ts)
    doc["exchange_ts"] = event.exchange_ts
    doc["receive_ts"] = event.receive_ts
    top = getattr(event, "top", None)
    if isinstance(event, ev.DepthDiffReceived | ev.BookSnapshotTaken):
        doc["final_update_id"] = getattr(event, "last_update_id", None)
        doc["best_bid"] = None if top is None else [str(top.bid_price), str(top.bid_qty)]
        doc["best_ask"] = None if top is None else [str(top.ask_price), str(top.ask_qty)]
    elif isinstance(event, ev.SignalEmitted):
        doc["bar_time"] = as_date(event.bar_time)
        doc["bar_time_ns"] = event.bar_time
        doc["emitted_at"] = doc["received_at"]
    elif name in ORDER_STATUS:
        doc["status"] = ORDER_STATUS[name]
    return doc


def from_document(doc: Mapping[str, Any], *, levels: bool = True) -> ev.Event:
    """Rebuild the event a document stores (a depth diff without its levels when
    ``levels`` is false: see ``EventStore.read_all``).

    Raises:
        InvalidInputError: unknown type, or a document that does not fit it.
    """
    name = doc.get("type")
    try:
        if name == "DepthDiffReceived":
            return _depth_event(doc, levels)
        schema = _SCHEMAS.get(str(name))
        if schema is None:
            raise InvalidInputError(f"unknown event type {name!r} in document {doc.get('_id')!r}")
        cls, fields = schema
        kwargs = {field: from_doc(doc.get(field, _MISSING)) for field, _, from_doc in fields}
        if name == "SignalEmitted":
            kwargs["bar_time"] = int(doc["bar_time_ns"])
        if name == "BookSnapshotTaken":
            kwargs["top"] = _top(doc)
        return cls(
            stream=doc["stream"],
            version=int(doc["version"]),
            exchange_ts=int(doc["exchange_ts"]),
            receive_ts=int(doc["receive_ts"]),
            **kwargs,
        )
    except (KeyError, TypeError, ValueError, ArithmeticError, IndexError) as e:
        raise InvalidInputError(f"stored document {doc.get('_id')!r} is malformed: {e!r}") from e
