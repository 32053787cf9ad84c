"""Parsing and applying Binance depth frames: the collector's front door, against orjson.loads.

Frames are ``<symbol>@depth@100ms`` combined-stream frames with 20 level changes each (10
bids, 10 asks), contiguous update ids, as the WebSocket delivers them. The algotrade figure
parses each frame into a ``DepthDiffReceived`` (exact decimals) and applies it to a
synchronised book (``BookSynchronizer``: sequencing checks, level updates, top of book);
the baseline only decodes the same frames with ``orjson.loads``. Best of a few runs, all
measured in turn. algotrade's row runs what the collector runs: the compiled scanner and
book (``algotrade.adapters.speedups``) when built; a second row runs the pure-Python code
(``parse_frame_python`` and ``OrderBook``) for contrast.

A second table does the same on the real recorded frames of ``../shared/data/binance/``
(three symbols, about 11 level changes a frame), replayed through one synchroniser per
symbol from the recorded snapshots: once with the table of interned decimals emptied
before each run (every price and quantity text parsed as if first seen, the worst case for
a collector), once with it filled by the previous run. Left out when the recording is
absent.
"""

from __future__ import annotations

import os
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import RECORDING

from algotrade.adapters import decimals, speedups
from algotrade.adapters.binance.messages import (
    parse_depth_snapshot,
    parse_frame,
    parse_frame_python,
)
from algotrade.apps.common import tune_gc
from algotrade.apps.logs import configure_logging
from algotrade.domain.book import BookSynchronizer
from algotrade.domain.events import DepthDiffReceived

LEVELS = 10  # per side: 20 level changes a frame


def frames(count: int, seed: int = 3) -> tuple[bytes, list[bytes]]:
    """Return a snapshot body and ``count`` contiguous 20-level depth frames."""
    rng = random.Random(seed)
    mid = Decimal("57000.00")
    tick = Decimal("0.01")
    snapshot = {
        "lastUpdateId": 1000,
        "bids": [[str(mid - k * tick), "1.00000000"] for k in range(1, 200)],
        "asks": [[str(mid + k * tick), "1.00000000"] for k in range(1, 200)],
    }
    out = []
    update = 1000
    for i in range(count):
        first = update + 1
        update += rng.randint(1, 5)
        bids = [
            [f"{mid - rng.randint(1, 199) * tick}", f"{rng.randint(0, 5000) / 1000:.8f}"]
            for _ in range(LEVELS)
        ]
        asks = [
            [f"{mid + rng.randint(1, 199) * tick}", f"{rng.randint(0, 5000) / 1000:.8f}"]
            for _ in range(LEVELS)
        ]
        data = {"e": "depthUpdate", "E": 1_700_000_000_000 + i * 100, "s": "BTCUSDT",
                "U": first, "u": update, "b": bids, "a": asks}  # fmt: skip
        out.append(orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data}))
    return orjson.dumps(snapshot), out


def bare_rate(data: list[bytes]) -> float:
    """Decode every frame with orjson.loads only."""
    loads = orjson.loads
    start = time.perf_counter()
    for frame in data:
        loads(frame)
    return len(data) / (time.perf_counter() - start)


def floor_rate(data: list[bytes]) -> float:
    """Decode every frame and set its levels in two dicts of text: the least any book in
    Python does per frame (no exact numbers, no top of book, no sequencing checks)."""
    loads = orjson.loads
    bids: dict[str, str] = {}
    asks: dict[str, str] = {}
    start = time.perf_counter()
    for frame in data:
        update = loads(frame)["data"]
        for side, book in ((update["b"], bids), (update["a"], asks)):
            for price, quantity in side:
                if quantity == "0.00000000":
                    book.pop(price, None)
                else:
                    book[price] = quantity
    return len(data) / (time.perf_counter() - start)


def algotrade_rate(snapshot: bytes, data: list[bytes], *, python: bool = False) -> float:
    """Parse every frame and apply it to a synchronised book, as the collector does (the
    compiled code when built), or with the pure-Python code only (``python``)."""
    if python:
        sync, parse = BookSynchronizer("BTCUSDT", exchange="binance"), parse_frame_python
    else:
        sync, parse = speedups.synchronizer("BTCUSDT", exchange="binance"), parse_frame
    sync.on_snapshot(parse_depth_snapshot("BTCUSDT", snapshot, 0))
    start = time.perf_counter()
    now = time.time_ns()
    for frame in data:
        event = parse(frame, now)
        assert isinstance(event, DepthDiffReceived)
        sync.on_diff(event)
    elapsed = time.perf_counter() - start
    assert sync.synced
    assert sync.gaps == 0
    return len(data) / elapsed


def recorded(path: Path) -> list[tuple[str, bytes]]:
    """Return the recording's depth snapshots (``symbol``) and frames (``""``), in order."""
    out = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            head, _, body = line.partition(": ")
            if " -> " in head and "/depth?symbol=" in head:
                symbol = head.split("symbol=", 1)[1].split("&", 1)[0]
                out.append((symbol, body.encode()))
            elif head[:1].isdigit() and body.startswith('{"stream":"') and "@depth" in body[:40]:
                out.append(("", body.encode()))
    return out


def recorded_rates(items: list[tuple[str, bytes]], *, cold: bool) -> tuple[float, float]:
    """Return frames/s of ``orjson.loads`` and of parse + apply on the recorded frames."""
    data = [body for symbol, body in items if not symbol]
    loads = orjson.loads
    start = time.perf_counter()
    for frame in data:
        loads(frame)
    bare = len(data) / (time.perf_counter() - start)
    snapshots = {
        id(body): parse_depth_snapshot(symbol, body, 0) for symbol, body in items if symbol
    }
    syncs = {
        symbol: speedups.synchronizer(symbol, exchange="binance") for symbol, _ in items if symbol
    }
    if cold:
        decimals.forget()
    now = time.time_ns()
    start = time.perf_counter()
    for symbol, body in items:
        if symbol:
            syncs[symbol].on_snapshot(snapshots[id(body)])
            continue
        event = parse_frame(body, now)
        assert isinstance(event, DepthDiffReceived)
        syncs[event.symbol].on_diff(event)
    ours = len(data) / (time.perf_counter() - start)
    assert all(s.synced and s.gaps == 0 for s in syncs.values()), "recording did not sync"
    return bare, ours


def run(count: int = 50_000, repeats: int = 5) -> tuple[dict[str, float], str]:
    """Measure both side by side; return figures and Markdown."""
    # As a service logs (one JSON line per order or problem), into a sink that costs no I/O.
    configure_logging(open(os.devnull, "w"), json=True)  # noqa: SIM115 - for the whole run
    tune_gc()  # as the services run (algotrade's CLI does the same)
    snapshot, data = frames(count)
    bare, floor, ours, python = [], [], [], []
    for _ in range(repeats):
        bare.append(bare_rate(data))
        floor.append(floor_rate(data))
        ours.append(algotrade_rate(snapshot, data))
        python.append(algotrade_rate(snapshot, data, python=True))
    figures = {"orjson": max(bare), "floor": max(floor), "algotrade": max(ours)}
    figures["python"] = max(python)
    ratio = figures["algotrade"] / figures["orjson"]
    how = "compiled scanner and book" if speedups.COMPILED else "NOT compiled: pure Python"
    lines = [
        "## Binance depth frames: parse and apply",
        "",
        f"{count:,} combined-stream depth frames with {2 * LEVELS} level changes each; best of",
        f"{repeats} runs, measured in turn. `algotrade` parses each frame into a depth event",
        "(exact decimals) and applies it to a synchronised order book (sequencing checks, top",
        "of book, the stored event), as the collector does: with the compiled scanner and",
        "book of `algotrade.adapters.speedups` (`_speedups.c`) when built. The pure-Python",
        "row runs the same without them (`ALGOTRADE_SPEEDUPS=0`, or no C compiler at install).",
        "`orjson.loads` only decodes the JSON; the floor row decodes, then sets each level in",
        "a dict of text (no exact numbers, no top of book, no checks, no event): the least",
        "any book written in Python does.",
        "",
        "| step | frames/s | / orjson |",
        "|---|---:|---:|",
        f"| `orjson.loads` only | {figures['orjson']:,.0f} | 1.00 |",
        f"| floor: `orjson.loads` + level dicts of text | {figures['floor']:,.0f}"
        f" | {figures['floor'] / figures['orjson']:.2f} |",
        f"| **algotrade parse + book apply** ({how}) | {figures['algotrade']:,.0f} | {ratio:.2f} |",
        f"| algotrade, pure Python | {figures['python']:,.0f}"
        f" | {figures['python'] / figures['orjson']:.2f} |",
        "",
        f"algotrade / orjson: **{ratio:.2f}** (goal: at least 0.5, and 50,000 frames/s);"
        f" {figures['algotrade'] / figures['python']:.1f} times the pure-Python code.",
        "How the compiled path gets there, and what was tried before it:",
        "[scaling](scaling.md#faster-per-process-what-was-measured).",
    ]
    if RECORDING.exists():
        lines += _recorded_section(RECORDING, repeats, figures)
    return figures, "\n".join(lines)


def _recorded_section(path: Path, repeats: int, figures: dict[str, float]) -> list[str]:
    """Measure the recorded frames, cold and warm; return the Markdown lines."""
    items = recorded(path)
    frames_count = sum(1 for symbol, _ in items if not symbol)
    rows = []
    for cold in (True, False):
        runs = [recorded_rates(items, cold=cold) for _ in range(repeats)]
        bare, ours = max(b for b, _ in runs), max(o for _, o in runs)
        rows.append((cold, bare, ours))
        figures["recorded_cold" if cold else "recorded_warm"] = ours
    return [
        "",
        f"The real recorded frames ({frames_count:,} depth frames of BTCUSDT, ETHUSDT and",
        "DOTUSDT, about 11 level changes each, with their recorded snapshots), best of",
        f"{repeats} runs each, the collector's code (compiled when built). Cold: the interned",
        "decimals emptied before each run, so every text is parsed as if first seen; warm:",
        "the table filled by the previous run. The",
        "synthetic frames above draw on 199 prices and 5,001 quantities a side, so every text",
        "is known after the first frames; real quantities rarely repeat (about one new text",
        "per two levels), so the cold row is the one to plan capacity on.",
        "",
        "| decimals | `orjson.loads` frames/s | algotrade parse + apply frames/s | / orjson |",
        "|---|---:|---:|---:|",
        *(
            f"| {'cold' if cold else 'warm'} | {bare:,.0f} | {ours:,.0f} | {ours / bare:.2f} |"
            for cold, bare, ours in rows
        ),
    ]


if __name__ == "__main__":
    print(run()[1])
