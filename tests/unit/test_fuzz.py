"""Fuzzing every input edge: Binance frames and REST bodies, Redis stream entries, replay
files and configuration values. Whatever comes in, a parser returns a value or raises the
project's own error (counted and kept aside by its caller); it never crashes otherwise, and
valid data around a bad input is kept."""

from __future__ import annotations

import contextlib
import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from algotrade.adapters.binance.messages import (
    parse_depth_snapshot,
    parse_frame,
    parse_rest_agg_trades,
    retry_after,
)
from algotrade.adapters.binance.userstream import read_frame
from algotrade.adapters.redis.codec import signal_from_fields, signal_to_fields
from algotrade.adapters.replay import ReplayFeed
from algotrade.apps.common import (
    parse_duration,
    parse_retention,
    parse_source,
    parse_speed,
    parse_symbols,
)
from algotrade.domain.broker import ExecutionEvent
from algotrade.domain.errors import ConfigurationError, InvalidInputError
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    SignalEmitted,
    TradeReceived,
)
from algotrade.domain.values import Side

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
DEPTH = {
    "stream": "btcusdt@depth@100ms",
    "data": {"e": "depthUpdate", "E": 1617500000000, "s": "BTCUSDT", "U": 10, "u": 12,
             "b": [["57000.01", "0.5"], ["56999.00", "0"]], "a": [["57001.00", "1.25"]]},
}  # fmt: skip
TRADE = {
    "stream": "btcusdt@aggTrade",
    "data": {"e": "aggTrade", "E": 1617500000000, "s": "BTCUSDT", "a": 7, "p": "57000.5",
             "q": "0.01", "f": 1, "l": 2, "T": 1617500000000, "m": True},
}  # fmt: skip
REPORT: dict[str, Any] = {
    "subscriptionId": 0,
    "event": {"e": "executionReport", "E": 1617500000000, "s": "BTCUSDT", "c": "abc",
              "S": "BUY", "o": "LIMIT", "x": "TRADE", "X": "PARTIALLY_FILLED", "r": "NONE",
              "i": 7, "l": "0.5", "z": "0.5", "L": "57000", "n": "0.0005", "N": "BTC",
              "Z": "28500", "C": ""},
}  # fmt: skip
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mutate(frame: dict[str, Any], path: tuple[str, ...], value: Any) -> bytes:
    """Return ``frame`` as JSON with the field at ``path`` replaced by ``value``."""
    copy: Any = orjson.loads(orjson.dumps(frame))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return orjson.dumps(copy)


def fields_of(frame: dict[str, Any]) -> list[tuple[str, ...]]:
    """Return the path of every field of a frame (top level and inside ``data``)."""
    return [("stream",), ("data",)] + [("data", key) for key in frame["data"]]


@FAST
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_a_frame_or_an_invalid_input(raw: bytes) -> None:
    """Random bytes never crash the frame parser: a sane market event, None (a frame of
    no interest) or InvalidInputError."""
    try:
        event = parse_frame(raw, 1)
    except InvalidInputError:
        return
    assert event is None or isinstance(event, DepthDiffReceived | TradeReceived)
    if event is not None:
        assert (event.version, event.receive_ts) == (0, 1)
        assert event.symbol
        assert event.symbol.isupper()


@FAST
@given(
    st.sampled_from([DEPTH, TRADE]).flatmap(
        lambda frame: st.tuples(st.just(frame), st.sampled_from(fields_of(frame)), JSON)
    )
)
def test_a_valid_frame_with_any_field_replaced_is_parsed_or_rejected(
    case: tuple[dict[str, Any], tuple[str, ...], Any],
) -> None:
    """One field of a real frame set to any JSON value: a sane event, or InvalidInputError."""
    frame, path, value = case
    try:
        event = parse_frame(mutate(frame, path, value), 1)
    except InvalidInputError:
        return
    if isinstance(event, DepthDiffReceived):
        for price, quantity in (*event.bids, *event.asks):
            assert isinstance(price, Decimal)
            assert price.is_finite()
            assert isinstance(quantity, Decimal)
            assert quantity.is_finite()
        assert event.first_update_id <= event.final_update_id
    elif isinstance(event, TradeReceived):
        assert event.price.is_finite()
        assert event.quantity.is_finite()


@FAST
@given(
    st.sampled_from(
        [("subscriptionId",), ("event",)] + [("event", k) for k in REPORT["event"]]
    ).flatmap(lambda path: st.tuples(st.just(path), JSON))
)
@example(case=(("event", "z"), "NaN"))
@example(case=(("event", "n"), "-Infinity"))
@example(case=(("event", "e"), []))
def test_a_user_data_frame_with_any_field_replaced_is_parsed_or_rejected(
    case: tuple[tuple[str, ...], Any],
) -> None:
    """One field of a real (wrapped) execution report set to any JSON value: a report with
    finite figures, None, or InvalidInputError, never another exception (it would drop the
    connection instead of counting the frame); an end of subscription only when the
    event's name says so."""
    path, value = case
    raw = mutate(REPORT, path, value)
    try:
        ended, report = read_frame(raw)
    except InvalidInputError:
        return
    assert ended in ("", "eventStreamTerminated", "serverShutdown")
    assert not (ended and report)
    if isinstance(report, ExecutionEvent):
        figures = (report.executed_quantity, report.executed_quote, report.last_quantity,
                   report.commission)  # fmt: skip
        assert all(f.is_finite() for f in figures)


@FAST
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_a_user_data_frame_or_an_invalid_input(raw: bytes) -> None:
    """Random bytes never crash the user data stream's parsers."""
    with contextlib.suppress(InvalidInputError):
        ended, _ = read_frame(raw)
        assert ended in ("", "eventStreamTerminated", "serverShutdown")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), ("0", 0.0), (None, 7.0), ("", 7.0), ("soon", 7.0),
     ("Wed, 21 Oct 2026 07:28:00 GMT", 7.0), ("nan", 7.0), ("inf", 7.0), ("-3", 7.0)],
)  # fmt: skip
def test_retry_after_is_a_finite_number_of_seconds_or_the_default(
    header: str | None, seconds: float
) -> None:
    """Every Binance client (market data, klines, orders) reads Retry-After the same way: a
    date, a word, NaN, an infinity or a negative number is no wait (a NaN sleep would raise,
    an infinite one would never end)."""
    headers = {} if header is None else {"Retry-After": header}
    assert retry_after(headers, 7.0) == seconds


@pytest.mark.parametrize(
    "level",
    [[57000.01, "0.5"], ["57000.01", 0.5], [57000, "1"], ["NaN", "1"], ["57000", "Infinity"],
     ["57000", "-inf"], ["57000", "1e"], ["57000"], ["57000", "1", "2"], [["57000"], "1"],
     "57000"],
)  # fmt: skip
def test_a_level_that_is_not_two_finite_decimal_strings_is_rejected(level: Any) -> None:
    """JSON numbers would be floats (inexact), NaN and infinities are no prices: a level
    must be two finite decimal strings, whether its texts were seen before or not."""
    good = mutate(DEPTH, ("data", "b"), [["57000.01", "0.5"]])
    assert isinstance(parse_frame(good, 1), DepthDiffReceived)  # the texts are now interned
    for levels in ([level], [["57000.01", "0.5"], level]):
        with pytest.raises(InvalidInputError, match=r"^b (has a malformed level|must be)"):
            parse_frame(mutate(DEPTH, ("data", "b"), levels), 1)


@pytest.mark.parametrize("field", ["p", "q"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-inf", 57000.5, "1e"])
def test_a_trade_price_or_quantity_must_be_a_finite_decimal_string(field: str, value: Any) -> None:
    """A trade price or quantity that is not a finite decimal string is refused by name."""
    with pytest.raises(InvalidInputError, match=f"field '{field}'"):
        parse_frame(mutate(TRADE, ("data", field), value), 1)


@FAST
@given(JSON.map(orjson.dumps) | st.binary(max_size=200))
def test_rest_bodies_are_parsed_or_rejected(body: bytes) -> None:
    """Any REST body for a snapshot or a trade backfill: events of the symbol asked for,
    received when it was, or InvalidInputError."""
    with contextlib.suppress(InvalidInputError):
        snapshot = parse_depth_snapshot("BTCUSDT", body, 1)
        assert isinstance(snapshot, BookSnapshotTaken)
        assert (snapshot.symbol, snapshot.receive_ts, snapshot.version) == ("BTCUSDT", 1, 0)
    with contextlib.suppress(InvalidInputError):
        trades = parse_rest_agg_trades("BTCUSDT", body, 1)
        assert all(isinstance(t, TradeReceived) for t in trades)
        assert {(t.symbol, t.receive_ts, t.version) for t in trades} <= {("BTCUSDT", 1, 0)}


SIGNAL = SignalEmitted(
    stream="signals-BTCUSDT-1m-sma_crossover-3-8", version=1, exchange_ts=1_617_500_000_000_000_000,
    receive_ts=1_617_500_000_100_000_000, signal_id="0b2c8f1e-7c3a-5d7e-9f00-000000000001",
    symbol="BTCUSDT", interval="1m", side=Side.BUY, price=Decimal("57000.5"), short_sma=1.5,
    long_sma=1.25, bar_time=1_617_499_940_000_000_000, strategy="sma_crossover",
    params=(("short", 3), ("long", 8)),
)  # fmt: skip


@FAST
@given(st.data())
def test_stream_entries_are_decoded_or_rejected(data: st.DataObject) -> None:
    """A signal entry with any field changed, dropped or added: a signal or InvalidInputError;
    an untouched entry round-trips exactly."""
    fields: dict[bytes | str, bytes | str] = dict(signal_to_fields(SIGNAL).items())
    assert signal_from_fields(dict(fields)) == SIGNAL
    key = data.draw(st.sampled_from(sorted(str(k) for k in fields)) | st.text(max_size=8))
    action = data.draw(st.sampled_from(["replace", "drop", "bytes"]))
    if action == "drop":
        fields.pop(key, None)
    elif action == "bytes":
        fields[key.encode()] = data.draw(st.binary(max_size=20))
    else:
        fields[key] = data.draw(st.text(max_size=30))
    try:
        signal = signal_from_fields(fields)
    except InvalidInputError:
        return
    assert signal.price.is_finite()
    assert signal.side in (Side.BUY, Side.SELL)


@FAST
@given(st.text(max_size=40))
@example("replay:" + "x" * 300)  # a file name too long for the OS (found by atheris)
@example("replay:" + "d/" * 3000)  # a path too long
def test_configuration_values_are_parsed_or_refused(text: str) -> None:
    """Any text given as a duration, speed, symbols, source or retention: a value, or a
    ConfigurationError naming the setting."""
    parsers = (parse_duration, parse_speed, parse_retention, lambda t: parse_symbols([t]),
               parse_source)  # fmt: skip
    for parse in parsers:
        try:
            parse(text)
        except ConfigurationError as e:
            assert e.name  # noqa: PT017 - the error itself is what is checked


@pytest.mark.slow
def test_garbage_lines_in_a_replay_lose_no_valid_event(recording: Path, tmp_path: Path) -> None:
    """Corrupt lines spliced into a recording are counted; every valid event still comes."""
    with recording.open(encoding="utf-8") as lines:
        head = list(itertools.islice(lines, 3000))
    clean, dirty = tmp_path / "clean.raw", tmp_path / "dirty.raw"
    clean.write_text("".join(head), encoding="utf-8")
    garbage = ["1617500000.5: {not json\n", "1617500000.6: " + "x" * 2000 + "\n",
               "1617500000.7: {\"stream\": \"btcusdt@depth@100ms\", \"data\": {\"b\": 1}}\n",
               "\x00\x01 binary\n", "https://api.binance.com/x -> 1.0: []\n"]  # fmt: skip
    spliced = [line for i, line in enumerate(head) for line in
               ([garbage[i % len(garbage)], line] if i % 97 == 0 else [line])]  # fmt: skip
    dirty.write_text("".join(spliced), encoding="utf-8")
    reference = ReplayFeed(clean)
    good = [e.id for e in reference.events()]
    feed = ReplayFeed(dirty)
    kept = [e.id for e in feed.events()]
    assert kept == good
    assert len(good) > 1000
    spliced_in = sum(1 for i in range(len(head)) if i % 97 == 0)
    ignored = feed.ignored - reference.ignored
    assert feed.rejected + ignored == spliced_in  # every bad line counted, none silently
    assert feed.rejected >= spliced_in * 3 // 5  # the corrupt frames, set aside with reasons
    assert all(isinstance(e, DepthDiffReceived | BookSnapshotTaken | TradeReceived)
               for e in ReplayFeed(clean).events())  # fmt: skip


@FAST
@given(st.lists(st.text(max_size=24), min_size=0, max_size=14))
def test_candle_rows_are_bars_or_rejected(fields: list[str]) -> None:
    """Any row of a kline CSV file: a bar with sane prices, or InvalidInputError."""
    from algotrade.adapters.candles import candle_bar

    try:
        bar, interval = candle_bar(fields, "BTCUSDT", None, 1)
    except InvalidInputError:
        return
    assert bar.low <= bar.open <= bar.high
    assert bar.low <= bar.close <= bar.high
    assert bar.close_time - bar.open_time == interval.nanos > 0
