"""The processor catching up on a SQLite store: stored market events per second.

A processor started after its collector (or restarted after a day away) reads every stored
market event in position order and runs it through bars and the SMA 50/200 crossover. The
store is filled first by ``algotrade collector --source synthetic`` (depth diffs with their
top of book, and trades). Measured side by side, in turn: the store's bare ``read_all``
(pages of 5,000, the processor's page) and ``ProcessorService.catch_up`` on a fresh copy of
the store each time (it stores bars and its checkpoint as it goes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from algotrade.adapters.memory import SystemClock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.apps.common import tune_gc
from algotrade.apps.logs import configure_logging
from algotrade.domain.bars import Interval
from algotrade.domain.processing import Processor
from algotrade.domain.strategy import SmaCrossover
from algotrade.services.processor import MARKET_TYPES, ProcessorService

COLLECT = "10s"


def fill(path: Path) -> None:
    """Store a synthetic market with the collector, as a user would."""
    subprocess.run(
        [sys.executable, "-m", "algotrade", "collector", "--source", "synthetic",
         "--duration", COLLECT, "--store", str(path), "--port", "0"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def read_rate(path: Path) -> tuple[int, float]:
    """Return (events, events/s) of reading every market event, 5,000 at a time."""
    store = SqliteEventStore(path)
    after, count = 0, 0
    start = time.perf_counter()
    while page := await store.read_all(after, limit=5000, types=MARKET_TYPES, levels=False):
        after = page[-1].position
        count += len(page)
    elapsed = time.perf_counter() - start
    await store.close()
    return count, count / elapsed


async def catch_up_rate(path: Path) -> tuple[int, float]:
    """Return (events, events/s) of a new processor catching up on the whole store."""
    store = SqliteEventStore(path)
    service = ProcessorService(
        store, Processor(Interval.parse("1m"), SmaCrossover), clock=SystemClock()
    )
    start = time.perf_counter()
    count = await service.catch_up()
    elapsed = time.perf_counter() - start
    await store.close()
    return count, count / elapsed


def run(repeats: int = 3) -> tuple[dict[str, float], str]:
    """Fill a store, then measure reading and catching up in turn; figures and Markdown."""
    # As the service logs (a JSON line per signal), into a sink that costs no I/O.
    configure_logging(open(os.devnull, "w"), json=True)  # noqa: SIM115 - for the whole run
    tune_gc(latency=True)  # as `algotrade processor` runs
    with tempfile.TemporaryDirectory() as tmp:
        filled = Path(tmp) / "market.db"
        fill(filled)
        reads, catch_ups = [], []
        events = 0
        for i in range(repeats):
            events, rate = anyio.run(read_rate, filled)
            reads.append(rate)
            copy = Path(tmp) / f"copy{i}.db"
            shutil.copy(filled, copy)
            handled, rate = anyio.run(catch_up_rate, copy)
            assert handled == events, (handled, events)
            catch_ups.append(rate)
    figures = {"events": float(events), "read": max(reads), "catch_up": max(catch_ups)}
    lines = [
        "## Processor catch-up (SQLite store)",
        "",
        f"Command: `python bench/run_all.py --only=processor`. A store filled by `algotrade"
        f" collector --source synthetic --duration {COLLECT}` ({events:,} market events:",
        "depth diffs with their top of book, and trades), then, best of"
        f" {repeats} in turn: the store's",
        "`read_all` alone (pages of 5,000, without depth levels: the processor's), and a",
        "new `ProcessorService` catching up on a fresh copy of it (1-minute bars, SMA 50/200,",
        "bars and checkpoint",
        "stored as it goes), as `algotrade processor` does after a restart.",
        "",
        "| step | events/s |",
        "|---|---:|",
        f"| `read_all` only | {figures['read']:,.0f} |",
        f"| processor catch-up | {figures['catch_up']:,.0f} |",
        "",
        f"Catch-up / read: **{figures['catch_up'] / figures['read']:.2f}**.",
    ]
    return figures, "\n".join(lines)


if __name__ == "__main__":
    print(run()[1])
