"""Health answers, metrics rendering and log hygiene of the services, without sockets."""

from __future__ import annotations

import io
import json
import sys
from decimal import Decimal

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from algotrade.apps import logs
from algotrade.apps.health import Check, Monitor, UnhealthyError
from algotrade.apps.logs import configure_logging, log, redact
from algotrade.apps.metrics import Figure, ServiceMetrics
from algotrade.apps.settings import RedisSettings, ServiceSettings

pytestmark = pytest.mark.anyio


def check(name: str, kind: str, answer: str | Exception, delay: float = 0.0) -> Check:
    """Return a check of ``kind`` that answers ``answer`` (or raises it) after ``delay``."""

    async def run() -> str:
        await anyio.sleep(delay)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return Check(name, "flow" if kind == "flow" else "dependency", run)


async def test_all_good_is_200_up_everywhere() -> None:
    """Passing checks give 200 and status UP on every endpoint, naming each check."""
    monitor = Monitor("trader", [check("redis", "dependency", "ping 1ms"),
                                 check("consumer", "flow", "lag 0")])  # fmt: skip
    async with monitor.probing():
        await monitor.probe()
    for answer in (monitor.healthcheck(), monitor.readyz(), monitor.livez()):
        status, body = answer
        assert status == 200
        assert body["status"] == "UP"
        assert body["service"] == "trader"
    assert set(monitor.readyz()[1]["checks"]) == {"loop", "redis", "consumer"}
    assert monitor.readyz()[1]["checks"]["redis"] == {"status": "UP", "detail": "ping 1ms"}


async def test_a_failing_dependency_is_503_naming_it() -> None:
    """A dependency that fails turns /healthcheck and /readyz 503 with its name and why."""
    monitor = Monitor("processor", [check("redis", "dependency", ConnectionError("refused")),
                                    check("mongodb", "dependency", "ping 2ms")])  # fmt: skip
    async with monitor.probing():
        await monitor.probe()
    for status, body in (monitor.healthcheck(), monitor.readyz()):
        assert status == 503
        assert body["status"] == "DOWN"
        assert body["checks"]["redis"] == {"status": "DOWN", "detail": "refused"}
        assert body["checks"]["mongodb"]["status"] == "UP"
    assert monitor.livez()[0] == 200  # the process itself is fine: no restart wanted


async def test_a_stalled_flow_fails_readiness_only() -> None:
    """Stale data fails /readyz but not /healthcheck: dependencies still answer."""
    stale = check("market_data", "flow", UnhealthyError("stale"))
    monitor = Monitor("collector", [check("sqlite", "dependency", "ping"), stale])
    async with monitor.probing():
        await monitor.probe()
    assert monitor.healthcheck()[0] == 200
    status, body = monitor.readyz()
    assert status == 503
    assert body["checks"]["market_data"] == {"status": "DOWN", "detail": "stale"}


async def test_a_probe_that_hangs_fails_after_its_timeout() -> None:
    """A dependency that never answers is reported DOWN after the probe timeout."""
    calls: list[float] = []

    async def slow_once() -> str:
        calls.append(0.6 if not calls else 0.0)
        await anyio.sleep(calls[-1])
        return "late" if len(calls) == 1 else "fast"

    monitor = Monitor("trader", [Check("redis", "dependency", slow_once)], timeout=0.1)
    async with monitor.probing():
        with anyio.fail_after(2):
            await monitor.probe()
        assert monitor.healthcheck()[1]["checks"]["redis"]["detail"] == "no answer within 0.1s"
        await monitor.probe()  # still running: not started twice, still not answering
        assert monitor.healthcheck()[0] == 503
        await anyio.sleep(0.6)  # the late probe ends on its own (never cancelled)
        await monitor.probe()
    assert len(calls) == 2
    assert monitor.healthcheck()[1]["checks"]["redis"] == {"status": "UP", "detail": "fast"}


async def test_before_the_first_probe_and_while_stopping_it_is_not_ready() -> None:
    """Nothing is ready before the first probe; a stopping service is not ready."""
    monitor = Monitor("trader", [check("redis", "dependency", "ping")])
    assert monitor.readyz()[0] == 503
    async with monitor.probing():
        await monitor.probe()
    assert monitor.readyz()[0] == 200
    monitor.stopping = True
    status, body = monitor.readyz()
    assert status == 503
    assert "draining" in body["checks"]["shutdown"]["detail"]
    assert monitor.healthcheck()[0] == 200


def test_metrics_render_figures_and_histograms() -> None:
    """/metrics text parses and carries the figures read at scrape time and the latencies."""
    counts = {"n": 3}
    metrics = ServiceMetrics(
        "collector",
        [lambda: [Figure("market_events", "counter", "Events.", counts["n"]),
                  Figure("book_synced", "gauge", "Synced.", labels=("symbol",),
                         values=[(("BTCUSDT",), 1.0)])]],
        ["frame_to_stored_seconds"],
    )  # fmt: skip
    metrics.observe("frame_to_stored_seconds", 0.004)
    metrics.observe("unknown_seconds", 1.0)  # ignored: not this service's
    counts["n"] = 7
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert families["algotrade_market_events"].samples[0].value == 7
    assert families["algotrade_book_synced"].samples[0].labels == {"symbol": "BTCUSDT"}
    histogram = families["algotrade_frame_to_stored_seconds"]
    count = [s for s in histogram.samples if s.name.endswith("_count")]
    assert count[0].value == 1
    assert "process_resident_memory_bytes" in families
    assert families["algotrade_build_info"].samples[0].labels["service"] == "collector"


def test_logs_are_json_lines_without_credentials() -> None:
    """Off a terminal, each log line is one JSON object; URL passwords never appear."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")  # not a terminal: JSON
    configure_logging(out)
    try:
        log("processor", "signal", id="abc", url="mongodb://user:s3cret@db:27017/x")
        log("store", "retry", password="hunter2", error="redis://:pw@redis:6379/0 refused")
    finally:
        configure_logging(sys.stderr)
    lines = raw.getvalue().decode().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "signal"
    assert first["app"] == "processor"
    assert first["level"] == "info"
    assert first["timestamp"].endswith("Z")
    assert first["url"] == "mongodb://user:***@db:27017/x"
    assert second["password"] == "***"
    assert "pw" not in second["error"]


def test_the_direct_json_path_writes_structlog_s_line() -> None:
    """``log`` writes JSON lines itself; they equal structlog's, field for field, in order."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    configure_logging(out)
    try:
        fields = {"id": "abc", "url": "mongodb://u:s3cret@h/x", "price": None, "n": 3,
                  "fee": Decimal("1E-7"), "executed": Decimal("0E-8")}  # fmt: skip
        log("trader", "order", **fields)
        logs._write = None  # what every other level and the console renderer go through
        log("trader", "order", **fields)
    finally:
        configure_logging(sys.stderr)
    direct, through = (json.loads(line) for line in raw.getvalue().decode().splitlines())
    assert direct.pop("timestamp").endswith("Z")
    assert through.pop("timestamp").endswith("Z")
    assert list(direct.items()) == list(through.items())
    assert direct["url"] == "mongodb://u:***@h/x"
    assert (direct["fee"], direct["executed"]) == ("0.0000001", "0.00000000")  # not 1E-7, 0E-8


def test_secrets_stay_out_of_settings_reprs() -> None:
    """Settings objects never show a store or Redis URL (they may hold passwords)."""
    shown = repr(ServiceSettings(store="mongodb://u:p4ss@h/btc_data")) + repr(
        RedisSettings("redis://:p4ss@h:6379/0")
    )
    assert "p4ss" not in shown
    assert redact("mongodb://u:p4ss@h/x") == "mongodb://u:***@h/x"
    # TLS URLs: an empty user, and secrets passed as query parameters
    assert redact("rediss://:p4ss@h:6380/0?ssl_cert_reqs=required") == (
        "rediss://:***@h:6380/0?ssl_cert_reqs=required"
    )
    assert redact(
        "mongodb+srv://u:p4ss@c.example.net/btc_data?tls=true&tlsCertificateKeyFilePassword=k3y"
        "&authSource=admin"
    ) == (
        "mongodb+srv://u:***@c.example.net/btc_data?tls=true&tlsCertificateKeyFilePassword=***"
        "&authSource=admin"
    )
