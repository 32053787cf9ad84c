"""Exact latency histograms: every sample counted, to the microsecond below 2 ms and within
0.1 % above (the layout of an HdrHistogram with three significant digits), served on
``/latencies`` next to the Prometheus buckets.

A Prometheus histogram says a p99 "fell in the bucket ending at 50 ms"; this one says it was
41.3 ms. Each sample is a dictionary increment (about 0.3 µs), the memory is bounded by the
number of distinct buckets (1,024 a power of two: under 24,000 from 1 µs to an hour),
and two snapshots subtract, so a caller measures a window of its own::

    before = httpx.get(url + "/latencies").json()
    ...
    after = httpx.get(url + "/latencies").json()
    counts = window(before["exchange_to_acked_seconds"], after["exchange_to_acked_seconds"])
    quantile(counts, 0.99)  # seconds: the highest value the 99th percentile's bucket holds
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

EXACT_BELOW = 2048
"""Microseconds: below this every microsecond is its own bucket; above, 1,024 buckets a
power of two (a bucket is at most 1/1,024 of its value wide)."""


def bucket(micros: int) -> int:
    """Return the lowest value (µs) of the bucket holding ``micros``."""
    if micros < EXACT_BELOW:
        return micros
    shift = micros.bit_length() - 11
    return micros >> shift << shift


def width(low: int) -> int:
    """Return the width (µs) of the bucket starting at ``low``."""
    return 1 if low < EXACT_BELOW else 1 << (low.bit_length() - 11)


class ExactHistogram:
    """One latency's samples by bucket, with their count, sum and maximum."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        """Count one sample (a negative one, a clock step, counts as 0)."""
        seconds = max(0.0, seconds)
        key = bucket(int(seconds * 1e6))
        self.counts[key] = self.counts.get(key, 0) + 1
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def snapshot(self) -> dict[str, Any]:
        """Return the histogram as JSON: ``counts`` maps each bucket's low µs to its count."""
        return {
            "count": self.count,
            "sum": self.total,
            "max": self.max,
            "counts": {str(k): v for k, v in sorted(self.counts.items())},
        }


def window(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[int, int]:
    """Return the samples counted between two snapshots of one histogram, by bucket."""
    earlier = before["counts"] if before else {}
    out = {int(k): v - earlier.get(k, 0) for k, v in after["counts"].items()}
    return {k: v for k, v in out.items() if v > 0}


def quantile(counts: Mapping[int, int], q: float) -> float | None:
    """Return quantile ``q`` (0 to 1; 1 is the maximum) of bucketed samples, in seconds: the
    highest value its bucket holds (at most 1 µs, or 0.1 %, above the sample itself).
    ``None`` when there are no samples."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))  # the smallest count reaching q, at least the first
    seen = 0
    for low in sorted(counts):
        seen += counts[low]
        if seen >= rank:
            return (low + width(low)) / 1e6
    raise AssertionError("unreachable: the ranks end at the total")  # pragma: no cover
