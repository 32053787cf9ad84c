"""SMA update cost per value across window sizes: O(1) means flat from 10 to 100,000."""

from __future__ import annotations

import random
import time
from collections import deque

from algotrade.domain.indicators import SimpleMovingAverage

WINDOWS = (10, 100, 1_000, 10_000, 100_000)
NAIVE_WINDOWS = (10, 100, 1_000)


def measure(window: int, values: list[float]) -> float:
    """Return ns per update over ``values`` (after a warm-up fill of the window)."""
    sma = SimpleMovingAverage(window)
    for v in values[:window]:
        sma.update(v)
    update = sma.update
    start = time.perf_counter_ns()
    for v in values:
        update(v)
    return (time.perf_counter_ns() - start) / len(values)


def measure_naive(window: int, values: list[float]) -> float:
    """Return ns per update of the O(window) way: re-summing the window every time."""
    buffer: deque[float] = deque(values[:window], maxlen=window)
    start = time.perf_counter_ns()
    for v in values:
        buffer.append(v)
        _ = sum(buffer) / window
    return (time.perf_counter_ns() - start) / len(values)


def run(n: int = 300_000, repeats: int = 5) -> tuple[dict[int, float], str]:
    """Measure every window, round-robin, best of ``repeats``; return figures and Markdown."""
    rng = random.Random(1)
    values = [30_000 + rng.gauss(0, 100) for _ in range(n)]
    best = dict.fromkeys(WINDOWS, float("inf"))
    naive = dict.fromkeys(NAIVE_WINDOWS, float("inf"))
    for _ in range(repeats):  # round-robin, so a slow moment of the machine hits every window
        for w in WINDOWS:
            best[w] = min(best[w], measure(w, values))
        for w in NAIVE_WINDOWS:
            naive[w] = min(naive[w], measure_naive(w, values[: n // 10]))
    lo, hi = min(best.values()), max(best.values())
    lines = [
        "## SMA update cost (O(1) per value)",
        "",
        f"{n:,} updates per window, best of {repeats} round-robin passes, in one run.",
        "The O(window) column re-sums the window on every update, for contrast.",
        "",
        "| window | ns/update | O(window) ns/update |",
        "|---:|---:|---:|",
        *(
            f"| {w:,} | {ns:,.0f} | {naive[w]:,.0f} |" if w in naive else f"| {w:,} | {ns:,.0f} | |"
            for w, ns in best.items()
        ),
        "",
        f"Largest / smallest: **{hi / lo:.2f}x** from window 10 to 100,000: flat.",
    ]
    return best, "\n".join(lines)


if __name__ == "__main__":
    print(run()[1])
