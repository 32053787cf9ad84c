"""Coverage-guided fuzzing (atheris, libFuzzer) of every input edge.

Run one target: ``python fuzz/targets.py TARGET [libFuzzer options] [CORPUS_DIR]``, for
example ``python fuzz/targets.py frame -runs=100000 -max_len=2048``; ``nox -s fuzz`` runs
them all. The corpus (default ``.fuzz/TARGET``) keeps the inputs found, for the next run.
Each target feeds the bytes to a parser that must either return or raise the project's
own error for bad input (``InvalidInputError``, ``ConfigurationError``): any other
exception is a crash, and libFuzzer writes the input that caused it to ``crash-*``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["algotrade"]):
    from algotrade.adapters.binance.messages import (
        parse_depth_snapshot,
        parse_frame,
        parse_frame_python,
        parse_rest_agg_trades,
    )
    from algotrade.adapters.binance.userstream import read_frame
    from algotrade.adapters.candles import candle_bar
    from algotrade.adapters.redis.codec import signal_from_fields
    from algotrade.adapters.speedups import scan_depth
    from algotrade.apps.common import (
        parse_duration,
        parse_retention,
        parse_source,
        parse_speed,
        parse_symbols,
    )
    from algotrade.domain.bars import Interval
    from algotrade.domain.errors import ConfigurationError, InvalidInputError


def frame(data: bytes) -> None:
    """A WebSocket frame from Binance."""
    with contextlib.suppress(InvalidInputError):
        parse_frame(data, 1)


def scan(data: bytes) -> None:
    """A WebSocket frame through the compiled depth scanner (C, when built): it must give
    the Python parser's event or step aside, never crash, never take a bad frame."""
    if scan_depth is None:
        return
    event = scan_depth(data, 1)
    if event is None:
        return
    try:
        expected = parse_frame_python(data, 1)
    except InvalidInputError as e:
        raise AssertionError(f"the scanner took a frame the parser rejects: {e}") from e
    if expected != event or repr(expected) != repr(event):
        raise AssertionError(f"the scanner read {event!r}, the parser {expected!r}")


def rest(data: bytes) -> None:
    """A REST body: a depth snapshot, or an aggTrades backfill."""
    for parse in (parse_depth_snapshot, parse_rest_agg_trades):
        with contextlib.suppress(InvalidInputError):
            parse("BTCUSDT", data, 1)


def report(data: bytes) -> None:
    """A user data stream frame (the trader's execution reports)."""
    with contextlib.suppress(InvalidInputError):
        read_frame(data)


def entry(data: bytes) -> None:
    """A Redis stream entry: fields split from the bytes."""
    fdp = atheris.FuzzedDataProvider(data)
    fields: dict[bytes | str, bytes | str] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 16)):
        fields[fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 12))] = fdp.ConsumeBytes(
            fdp.ConsumeIntInRange(0, 40)
        )
    with contextlib.suppress(InvalidInputError):
        signal_from_fields(fields)


def candle(data: bytes) -> None:
    """A kline CSV row (or REST kline), with and without an expected interval."""
    text = data.decode("utf-8", errors="replace")
    for interval in (None, Interval.parse("1m")):
        with contextlib.suppress(InvalidInputError):
            candle_bar(text.split(","), "BTCUSDT", interval, 1)


def config(data: bytes) -> None:
    """A configuration value given to each parser."""
    text = data.decode("utf-8", errors="replace")
    parsers: tuple[Callable[[str], object], ...] = (
        parse_duration, parse_speed, parse_retention, lambda t: parse_symbols([t]),
        parse_source, Interval.parse,
    )  # fmt: skip
    for parse in parsers:
        with contextlib.suppress(ConfigurationError):
            parse(text)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frame": frame,
    "scan": scan,
    "rest": rest,
    "report": report,
    "entry": entry,
    "candle": candle,
    "config": config,
}

# Valid inputs to start from (libFuzzer mutates them): without them, random bytes rarely
# get past the JSON parser. They are written into the corpus directory on every start.
SEEDS: dict[str, list[bytes]] = {
    "frame": [
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1617500000000,'
        b'"s":"BTCUSDT","U":10,"u":12,"b":[["57000.01","0.5"],["56999.00","0"]],'
        b'"a":[["57001.00","1.25"]]}}',
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617500000000,"s":"BTCUSDT",'
        b'"a":7,"p":"57000.5","q":"0.01","f":1,"l":2,"T":1617500000000,"m":true}}',
        b'{"result":null,"id":1}',
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"serverShutdown","E":1617500000000}}',
    ],
    "scan": [
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1617500000000,'
        b'"s":"BTCUSDT","U":10,"u":12,"b":[["57000.01","0.5"],["56999.00","0"]],'
        b'"a":[["57001.00","1.25"]]}}',
        b'{ "stream" : "ethusdt@depth" , "data" : { "e" : "depthUpdate" , "E" : 1 , '
        b'"s" : "ETHUSDT" , "U" : 0 , "u" : 0 , "b" : [ ] , "a" : [ [ "1e5" , "2" ] ] } }',
    ],
    "rest": [
        b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],'
        b'"asks":[["4.00000200","12.00000000"]]}',
        b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,'
        b'"T":1498793709153,"m":true,"M":true}]',
    ],
    "report": [
        b'{"subscriptionId":0,"event":{"e":"executionReport","E":1617500000000,"s":"BTCUSDT",'
        b'"c":"abc","S":"BUY","o":"LIMIT","x":"TRADE","X":"PARTIALLY_FILLED","r":"NONE",'
        b'"i":7,"l":"0.5","z":"0.5","L":"57000","n":"0.0005","N":"BTC","Z":"28500","C":""}}',
        b'{"subscriptionId":0,"event":{"e":"eventStreamTerminated","E":1617500000000}}',
        b'{"id":"algotrade-1","status":200,"result":{"subscriptionId":0}}',
    ],
    "entry": [b"\x05id\x24" + b"0" * 36 + b"\x04side\x03BUY"],
    "candle": [
        b"1704067200000,42283.58,42554.57,41800.00,42475.23,1271.68,1704153599999,"
        b"53900000.3,1145672,616.94,26152000.7,0",
        b"1735689600000000,93576.00,95151.15,92888.00,94591.79,10373.32,1735775999999999,"
        b"977000000.0,1465066,5099.00,480000000.0,0",
    ],
    "config": [b"90s", b"max", b"7d", b"BTCUSDT,ETHUSDT", b"replay:/tmp/x.raw", b"1m", b"0"],
}


CORPUS = Path(__file__).resolve().parent.parent / ".fuzz"
"""Where each target keeps its corpus between runs (``.fuzz/TARGET``, not committed): every
run starts from what earlier runs found instead of from the seeds alone."""


def seed(name: str, directory: Path) -> None:
    """Write the target's seeds into its corpus ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(SEEDS[name]):
        (directory / f"seed-{i}").write_bytes(data)


if __name__ == "__main__":
    name = sys.argv[1]
    options = sys.argv[2:]
    corpora = [o for o in options if not o.startswith("-")]
    if not corpora:
        corpora = [str(CORPUS / name)]
        options.append(corpora[0])
    seed(name, Path(corpora[0]))
    atheris.Setup([sys.argv[0], *options], TARGETS[name])
    atheris.Fuzz()
