"""`algotrade run --source synthetic --speed max`: market events per second, and peak memory."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

COMMAND = [
    "run",
    "--source",
    "synthetic",
    "--speed",
    "max",
    "--interval",
    "1m",
    "--short",
    "50",
    "--long",
    "200",
    "--duration",
    "20s",
    "--json",
]


def once(store: Path) -> tuple[dict[str, object], int]:
    """Run the command once; return its JSON summary and its peak RSS in KiB."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "algotrade", *COMMAND, "--store", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"algotrade run failed with status {proc.returncode}")
    summary = json.loads(out)
    # The run's own VmHWM: wait4's ru_maxrss would count the pages of this (forking) process.
    peak = summary.get("peak_rss_mib")
    return summary, int(peak * 1024) if peak is not None else usage.ru_maxrss


def run(repeats: int = 3) -> tuple[dict[str, float], str]:
    """Run the pipeline ``repeats`` times on fresh stores; return figures and Markdown.

    Each repeat also runs the same command on the in-memory store, right after, so the
    ratio says what durability costs whatever the machine's speed at that moment.
    """
    rates: list[float] = []
    memory_rates: list[float] = []
    peaks: list[int] = []
    last: dict[str, object] = {}
    for i in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            last, peak = once(Path(tmp) / f"bench-{i}.db")
        rates.append(float(last["events"]) / float(last["seconds"]))  # type: ignore[arg-type]
        peaks.append(peak)
        in_memory, _ = once(Path("memory"))
        memory_rates.append(
            float(in_memory["events"]) / float(in_memory["seconds"])  # type: ignore[arg-type]
        )
    figures = {
        "best": max(rates),
        "median": statistics.median(rates),
        "peak_rss_mib": max(peaks) / 1024,
        "memory_best": max(memory_rates),
        "ratio": statistics.median(r / m for r, m in zip(rates, memory_rates, strict=True)),
    }
    lines = [
        "## `algotrade run` throughput (synthetic market, embedded SQLite store)",
        "",
        f"Command: `algotrade {' '.join(COMMAND)} --store <fresh file>`, {repeats} runs.",
        "Every event goes through the book synchroniser, the SQLite store (one durable",
        "append per batch), bars, the SMA 50/200 crossover and the paper trader. The synthetic",
        "market emits one depth diff (about 12 level changes) and on average 1.4 trades every",
        "100 ms of market time: the mix of the recorded BTCUSDT session (11 and 1.36).",
        "",
        "| store | runs | best events/s | median events/s | peak RSS |",
        "|---|---:|---:|---:|---:|",
        f"| SQLite (default) | {repeats} | {figures['best']:,.0f} | {figures['median']:,.0f} |"
        f" {figures['peak_rss_mib']:,.0f} MiB |",
        f"| memory (`--store memory`) | {repeats} | {figures['memory_best']:,.0f} |"
        f" {statistics.median(memory_rates):,.0f} | |",
        "",
        f"SQLite / memory, median of the side-by-side pairs: **{figures['ratio']:.2f}**.",
        "",
        f"Last run: {last.get('events'):,} events, {last.get('bars')} bars,"
        f" {last.get('signals')} signals, {last.get('orders')} orders.",
    ]
    return figures, "\n".join(lines)


if __name__ == "__main__":
    print(run()[1])
