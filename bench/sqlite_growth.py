"""The SQLite store as it grows: appends of one depth diff each, as a live collector makes.

A live collector stores a small segment (one append's market events) up to 20 times a
second, so a day of one symbol is over a million segments. Each append must cost the same
at any size. Measured: appends per second in windows as the store grows, and, on the same
file at each size, the head lookup an append makes (the last segment by its key) beside
the one it replaced (``MAX(last)``, which read every segment).
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.builders import diff, snapshot

from algotrade.adapters.sqlite import SqliteEventStore

NEW = "SELECT last FROM segments ORDER BY first DESC LIMIT 1"
OLD = "SELECT COALESCE(MAX(last), 0) FROM segments"


def lookup_us(path: Path, query: str, repeats: int = 50) -> float:
    """Return the best time of ``query`` on the file, in microseconds."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            db.execute(query).fetchone()
            best = min(best, time.perf_counter() - start)
    return best * 1e6


async def grow(
    path: Path, marks: tuple[int, ...], window: int
) -> list[tuple[int, float, float, float]]:
    """Append one-diff segments up to each mark; return (segments, appends/s, new us, old us)."""
    store = SqliteEventStore(path, retention=7 * 86400.0)
    rows = []
    try:
        await store.append([snapshot(100)])
        n = 0
        for mark in marks:
            while n < mark - window:
                n += 1
                await store.append([diff(100 + n, 100 + n, [("99", str(n % 50 + 1))])])
            start = time.perf_counter()
            for _ in range(window):
                n += 1
                await store.append([diff(100 + n, 100 + n, [("99", str(n % 50 + 1))])])
            rate = window / (time.perf_counter() - start)
            rows.append((mark, rate, lookup_us(path, NEW), lookup_us(path, OLD)))
            print(f"  {mark:,} segments: {rate:,.0f} appends/s", file=sys.stderr, flush=True)
    finally:
        await store.close()
    return rows


def run(
    marks: tuple[int, ...] = (5_000, 50_000, 100_000, 200_000), window: int = 5_000
) -> tuple[dict[int, float], str]:
    """Measure; return appends/s by store size and Markdown."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = anyio.run(grow, Path(tmp) / "growth.db", marks, window)
    first, last = rows[0][1], rows[-1][1]
    size, _, new, old = rows[-1]
    lines = [
        "## SQLite store growth (appends as a live collector makes them)",
        "",
        "Command: `python bench/run_all.py --only=sqlite_growth`. One depth diff per append (a",
        f"segment each), appends/s over the last {window:,} appends before each size; the",
        "head lookups are the best of 50 on the same file at that size.",
        "",
        "| segments | appends/s | head lookup (by key) us | `MAX(last)` us (before) |",
        "|---:|---:|---:|---:|",
        *(f"| {n:,} | {rate:,.0f} | {new:.1f} | {old:,.0f} |" for n, rate, new, old in rows),
        "",
        f"Appends/s at {size:,} segments / at {rows[0][0]:,}: **{last / first:.2f}** (flat is"
        f" 1.00). Each append used to find the head with `MAX(last)`: at {size:,} segments"
        f" {old:,.0f} us, {old / new:,.0f} times the lookup by key, and growing with the store.",
    ]
    return {n: rate for n, rate, _, _ in rows}, "\n".join(lines)


if __name__ == "__main__":
    print(run()[1])
