"""The dashboard's latency panels read milliseconds on a synthetic run: every latency is
measured on this machine's clock, so data stamped with another time (a synthetic or
replayed source) cannot make a panel read its age instead of the service's delay."""

from __future__ import annotations

import json
import math
import os
from functools import partial
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from algotrade.apps.latency import quantile as exact_quantile
from algotrade.apps.latency import window
from tests.support.processes import Service, start_service, up, wait_until
from tests.support.servers import MongoServer, RedisServer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "algotrade.json"


def buckets(service: Service, histogram: str) -> list[tuple[float, float]]:
    """Return a histogram's cumulative buckets (upper bound, count), summed over labels."""
    status, text = service.get("/metrics")
    assert status == 200, text
    summed: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{histogram}_bucket":
                bound = float(sample.labels["le"])
                summed[bound] = summed.get(bound, 0.0) + sample.value
    return sorted(summed.items())


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile``: linear within the bucket the rank falls in."""
    total = cumulative[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return lower  # the highest finite bound, as Prometheus answers
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def panel_histograms() -> set[str]:
    """Return the histograms the dashboard's quantile panels read."""
    names: set[str] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if "histogram_quantile" in expr:
                names.add(expr.split("rate(")[1].split("_bucket")[0])
    return names


def test_latency_panels_read_milliseconds_on_a_synthetic_run(
    own_servers: tuple[RedisServer, MongoServer], tmp_path: Path
) -> None:
    """Collector (synthetic source), processor and trader as the stack runs them: the p50
    and p99 that every latency panel computes stay in the finite buckets (milliseconds to
    a few hundred under this flood of signals, seconds at worst on a loaded machine), where
    a latency taken from the data's own timestamps would read years (the +Inf bucket)."""
    redis_server, _ = own_servers
    store = str(tmp_path / "events.db")
    env = {**os.environ, "ALGOTRADE_REDIS_URL": redis_server.url, "ALGOTRADE_STORE": store}
    env.pop("ALGOTRADE_MONGO_URL", None)
    collector = start_service("collector", ["--source", "synthetic"], env, tmp_path)
    processor = start_service(
        "processor",
        ["--interval", "1s", "--short", "3", "--long", "8", "--no-warmup"],
        env,
        tmp_path,
    )
    trader = start_service("trader", ["--consumer", "t1"], env, tmp_path)
    services = {"collector": collector, "processor": processor, "trader": trader}
    try:
        for service in services.values():
            wait_until(partial(up, service, "/healthcheck"), 90, f"{service.name} up")
        wait_until(lambda: trader.figure("algotrade_orders_total") >= 2, 120, "two orders")
        read = 0
        for histogram in sorted(panel_histograms()):
            metric = histogram.removeprefix("algotrade_")
            owners = [s for s in services.values() if buckets(s, histogram)]
            for service in owners:
                cumulative = buckets(service, histogram)
                if cumulative[-1][1] == 0:
                    continue  # e.g. the Redis ops of a service that has not acked yet
                p50, p99 = quantile(0.5, cumulative), quantile(0.99, cumulative)
                assert p50 < 2.5, (service.name, metric, p50, cumulative)
                assert p99 < 10.0, (service.name, metric, p99, cumulative)
                read += 1
        # Every latency the stack measures on a run like this one was read.
        for name in ("frame_to_stored_seconds", "event_to_signal_seconds",
                     "order_placement_seconds", "store_operation_seconds",
                     "redis_operation_seconds"):  # fmt: skip
            assert f"algotrade_{name}" in panel_histograms(), name
        assert read >= 7, read
        # /latencies counts every sample the buckets count, exactly (read around a scrape).
        exact_read = 0
        for service in services.values():
            status, before = service.get("/latencies")
            assert status == 200, before
            between = {name: buckets(service, f"algotrade_{name}") for name in before}
            _, after = service.get("/latencies")
            for name, cumulative in between.items():
                assert before[name]["count"] <= cumulative[-1][1] <= after[name]["count"], name
                counts = window(None, after[name])
                if counts:
                    exact_p99 = exact_quantile(counts, 0.99)
                    assert exact_p99 is not None
                    assert exact_p99 < 10.0, (service.name, name, exact_p99)
                    exact_read += 1
        assert exact_read >= 4, exact_read
    finally:
        for service in services.values():
            service.stop()
