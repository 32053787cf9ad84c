"""Exact latency histograms: every sample counted, quantiles within a microsecond or 0.1 %."""

from __future__ import annotations

import json
import math
import random

import pytest

from algotrade.apps.latency import ExactHistogram, bucket, quantile, width, window
from algotrade.apps.metrics import ServiceMetrics


def test_buckets_are_exact_below_two_milliseconds_and_within_a_thousandth_above() -> None:
    for micros in range(0, 2048):
        assert bucket(micros) == micros
        assert width(micros) == 1
    rng = random.Random(7)
    for _ in range(20_000):
        micros = rng.randrange(2048, 3_600_000_000)
        low = bucket(micros)
        assert low <= micros < low + width(low)
        assert width(low) <= low / 1024
        assert bucket(low) == low
        assert bucket(low + width(low) - 1) == low


def test_quantiles_match_the_sorted_samples() -> None:
    rng = random.Random(11)
    samples = [rng.lognormvariate(-4.5, 1.2) for _ in range(50_000)]  # ~11 ms, long tail
    h = ExactHistogram()
    for s in samples:
        h.record(s)
    ordered = sorted(samples)
    counts = window(None, json.loads(json.dumps(h.snapshot())))
    for q in (0.0, 0.5, 0.9, 0.99, 0.999, 1.0):
        exact = ordered[max(1, math.ceil(q * len(ordered))) - 1]  # the q-th sample itself
        got = quantile(counts, q)
        assert got is not None
        assert exact <= got <= exact * 1.001 + 1e-6, (q, exact, got)
    assert h.count == len(samples)
    assert h.max == max(samples)
    assert quantile(counts, 1.0) == pytest.approx(max(samples), rel=1e-3, abs=1e-6)


def test_a_window_holds_only_the_samples_between_two_snapshots() -> None:
    h = ExactHistogram()
    for s in (0.001, 0.002, 0.5):
        h.record(s)
    before = json.loads(json.dumps(h.snapshot()))
    for s in (0.010, 0.020, 0.030, -0.001):
        h.record(s)
    counts = window(before, h.snapshot())
    assert sum(counts.values()) == 4
    assert quantile(counts, 0.25) == pytest.approx(0.000001)  # the negative one counts as 0
    assert quantile(counts, 1.0) == pytest.approx(0.030, rel=1e-3)
    assert quantile({}, 0.5) is None


def test_service_metrics_record_each_latency_exactly_beside_its_buckets() -> None:
    metrics = ServiceMetrics("trader", [], ["exchange_to_acked_seconds"])
    for s in (0.004, 0.041, 0.0413):
        metrics.observe_data_latency("exchange_to_acked_seconds", s)
    metrics.observe_data_latency("exchange_to_acked_seconds", 7200.0)  # replayed: unmeasured
    metrics.observe("not_this_services", 1.0)
    served = metrics.latencies()
    assert set(served) == {"exchange_to_acked_seconds"}
    counts = window(None, served["exchange_to_acked_seconds"])
    assert sum(counts.values()) == 3
    assert quantile(counts, 1.0) == pytest.approx(0.0413, rel=1e-3)
    assert b"algotrade_exchange_to_acked_seconds_count 3.0" in metrics.render()
