"""A long live run: the collector on the fake exchange at about 1,000 frames/s, RSS sampled.

The fake exchange and ``algotrade collector --source binance`` run as two processes; the
collector's resident memory is read from ``/proc`` every few seconds. Memory must stay flat
after warm-up: the figures are the RSS at the end of warm-up and at the end of the run, and
the RSS each minute. Warm-up is the first 8 minutes: the collector's caches (SQLite's page
cache of 16 MiB, the tables of decimals, the allocator's arenas) fill over about that long
at this rate (measured 2026-11-27: 93 MiB at 1 min, 108 MiB from 8 min to 22 min); the
ten minutes after it are the measured run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mib(pid: int) -> float:
    """Return a process's resident set size in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def each_minute(samples: list[tuple[float, float]]) -> list[float]:
    """Return the first RSS sample of each whole minute after the start."""
    out = []
    for minute in range(1, int(samples[-1][0] // 60) + 1):
        out.append(next(rss for t, rss in samples if t >= 60 * minute))
    return out


def run(
    seconds: float = 1080.0, warmup: float = 480.0, rate: float = 700.0
) -> tuple[dict[str, float], str]:
    """Run the soak; return figures and Markdown."""
    with tempfile.TemporaryDirectory(prefix="algotrade-soak-") as tmp:
        port_file = Path(tmp) / "port"
        fake = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_binance", str(rate), str(port_file)],
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            port = port_file.read_text()
            env = {
                **os.environ,
                "ALGOTRADE_BINANCE_WS_URL": f"ws://127.0.0.1:{port}",
                "ALGOTRADE_BINANCE_REST_URL": f"http://127.0.0.1:{port}",
            }
            collector = subprocess.Popen(
                [sys.executable, "-m", "algotrade", "collector", "--store", f"{tmp}/soak.db",
                 "--duration", f"{seconds:.0f}s", "--json"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            samples: list[tuple[float, float]] = []
            started = time.monotonic()
            while collector.poll() is None:
                samples.append((time.monotonic() - started, rss_mib(collector.pid)))
                time.sleep(5)
            summary = collector.communicate()[0]
        finally:
            fake.terminate()
            fake.wait()
    figures = orjson.loads(summary)
    warm = [r for t, r in samples if t >= warmup]
    start_rss, end_rss = warm[0], warm[-1]
    peak = max(warm)
    events = figures["events"]
    lines = [
        "## Live collector soak (fake exchange, about 1,000 frames/s)",
        "",
        f"`algotrade collector --source binance --duration {seconds:.0f}s` against",
        f"`python -m tests.support.fake_binance {rate:g}` (a depth frame per step and a trade",
        "every other step), embedded SQLite store; RSS read from `/proc` every 5 s.",
        "",
        "| events | events/s | gaps | reconnects | RSS after warm-up | RSS at the end | peak |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {events:,} | {events / figures['seconds']:,.0f} | {figures['gaps']} |"
        f" {figures['reconnects']} | {start_rss:.1f} MiB | {end_rss:.1f} MiB | {peak:.1f} MiB |",
        "",
        f"Warm-up: the first {warmup:.0f} s; measured: the {seconds - warmup:.0f} s after it."
        f" End / start: **{end_rss / start_rss:.2f}**.",
        "",
        "RSS each minute (MiB): " + ", ".join(f"{r:.1f}" for r in each_minute(samples)) + ".",
    ]
    return {"start_rss": start_rss, "end_rss": end_rss, "events": events}, "\n".join(lines)


if __name__ == "__main__":
    print(run(*(float(a) for a in sys.argv[1:]))[1])
