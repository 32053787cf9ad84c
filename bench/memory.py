"""Memory per symbol: the resident set of each service with 10, 100 and 500 symbols.

The three services run as processes, as a user starts them, on one SQLite store (signals
through the store): ``algotrade collector --source synthetic`` (every symbol a seeded
random walk with a 20-level book, a diff every 100 ms of market time and 1.4 trades per
diff), ``algotrade processor`` (1 s bars, SMA 2/3) and ``algotrade trader``. Market time
runs at a tenth of real time (``--speed 0.1``), so that the rate (2.4 events/s a symbol)
stays within what the store takes at 500 symbols and the figure is the state a symbol
costs, not a backlog. Each process's ``VmRSS`` is read from ``/proc`` after the run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.processes import Service, start_service, wait_until

COUNTS = (10, 100, 500)
SECONDS = 40.0


def rss_mib(pid: int) -> float:
    """Return a process's resident set in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def alive(service: Service) -> bool:
    """Return whether the service answers /livez."""
    return service.get("/livez")[0] == 200


def one(count: int) -> dict[str, float]:
    """Run the three services on ``count`` symbols; return each one's RSS and activity."""
    symbols = ",".join(f"S{i:03d}USDT" for i in range(count))
    with tempfile.TemporaryDirectory() as directory:
        store = str(Path(directory) / "events.db")
        env = {**os.environ, "ALGOTRADE_STORE": store}
        env.pop("ALGOTRADE_MONGO_URL", None)
        env.pop("ALGOTRADE_REDIS_URL", None)
        logs = Path(directory)
        collector = start_service(
            "collector", ["--source", "synthetic", "--symbol", symbols, "--speed", "0.1"], env,
            logs,
        )  # fmt: skip
        processor = start_service(
            "processor", ["--interval", "1s", "--short", "2", "--long", "3", "--no-warmup"],
            env, logs,
        )  # fmt: skip
        trader = start_service("trader", [], env, logs)
        services = {"collector": collector, "processor": processor, "trader": trader}
        try:
            for service in services.values():
                wait_until(partial(alive, service), 120, service.name)
            time.sleep(SECONDS)
            out = {name: rss_mib(s.process.pid) for name, s in services.items()}
            out["events"] = collector.figure("algotrade_stored_events_total")
            out["bars"] = processor.figure("algotrade_bars_total")
            out["orders"] = trader.figure("algotrade_orders_total")
            out["lag"] = processor.figure("algotrade_processor_lag_events")
        finally:
            for service in services.values():
                service.stop()
    return out


def run() -> tuple[dict[int, dict[str, float]], str]:
    """Measure every count; return the figures and the page's section."""
    found = {count: one(count) for count in COUNTS}
    lo, hi = COUNTS[0], COUNTS[-1]
    lines = [
        "## Memory per symbol: each service's resident set with 10, 100 and 500 symbols",
        "",
        "Command: `python bench/run_all.py --only=memory` (also part of `nox -s bench`). "
        "The three services as processes on one SQLite store: `collector --source "
        "synthetic --speed 0.1` (a 20-level book per symbol, 2.4 events/s a symbol), "
        "`processor --interval 1s --short 2 --long 3`, `trader`; `VmRSS` after "
        f"{SECONDS:.0f} s.",
        "",
        "| symbols | collector MiB | processor MiB | trader MiB | events stored | bars | "
        "orders | processor lag |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, f in found.items():
        lines.append(
            f"| {count} | {f['collector']:.1f} | {f['processor']:.1f} | {f['trader']:.1f} | "
            f"{f['events']:,.0f} | {f['bars']:,.0f} | {f['orders']:,.0f} | {f['lag']:,.0f} |"
        )
    per = {name: (found[hi][name] - found[lo][name]) * 1024 / (hi - lo)
           for name in ("collector", "processor", "trader")}  # fmt: skip
    lines += [
        "",
        f"Per symbol, from {lo} to {hi}: collector {per['collector']:.0f} KiB, processor "
        f"{per['processor']:.0f} KiB, trader {per['trader']:.0f} KiB. The collector's "
        "includes the symbol's book (20 levels a side here, as `Decimal` prices and "
        "quantities); the processor keeps per symbol a bar aggregator and a strategy; "
        "the trader, a position.",
    ]
    return found, "\n".join(lines)


if __name__ == "__main__":
    print(run()[1])
