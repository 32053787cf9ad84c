"""The three services as separate processes on the fake exchange, real Redis and MongoDB:
health that means data flows, metrics, outages, silence, and SIGTERM under load."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import ClassVar

import anyio
import pytest
import redis

from algotrade.domain.events import BookSnapshotTaken, DepthDiffReceived, SequenceGapDetected
from algotrade.domain.values import GapReason
from tests.support.fake_binance import FakeBinance
from tests.support.processes import (
    GATEWAY_METRICS,
    assert_depth_complete,
    cli,
    down_naming,
    group_state,
    stack_metric_names,
    start_service,
    stored_depth,
    up,
    wait_until,
)
from tests.support.servers import (
    MongoServer,
    RedisServer,
    with_database,
)

pytestmark = pytest.mark.slow
FAST = ["--interval", "1s", "--short", "3", "--long", "8"]


@pytest.fixture
def exchange() -> Iterator[FakeBinance]:
    """Run a fake Binance exchange (two symbols) in a thread while the test runs processes."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(FakeBinance(("BTCUSDT", "ETHUSDT"), rate=40.0)) as fake,
    ):
        yield fake


def test_services_health_metrics_outages_and_sigterm(
    exchange: FakeBinance, own_servers: tuple[RedisServer, MongoServer], tmp_path: Path
) -> None:
    """Signals and orders flow; health follows Redis, MongoDB and the exchange; SIGTERM
    under load exits 0 with nothing pending and nothing lost."""
    redis_server, mongo_server = own_servers
    mongo_url = with_database(mongo_server.url, "btc_data")
    env = {
        **os.environ,
        "ALGOTRADE_MONGO_URL": mongo_url,
        "ALGOTRADE_REDIS_URL": redis_server.url,
        "ALGOTRADE_BINANCE_WS_URL": exchange.ws_url,
        "ALGOTRADE_BINANCE_REST_URL": exchange.rest_url,
        "ALGOTRADE_DEPTH_RETENTION": "0",
    }
    env.pop("ALGOTRADE_STORE", None)
    collector = start_service(
        "collector", ["--symbol", "BTCUSDT", "--stale-after", "3s"], env, tmp_path
    )
    processor = start_service("processor", FAST, env, tmp_path)
    trader = start_service("trader", ["--consumer", "t1"], env, tmp_path)
    services = [collector, processor, trader]
    try:
        # Data flows end to end: every service ready, orders stored.
        for service in services:
            wait_until(partial(up, service), 90, f"{service.name} ready")
        wait_until(lambda: trader.figure("algotrade_orders_total") >= 2, 120, "two orders")
        exported: set[str] = set()
        for service in services:
            for path in ("/healthcheck", "/livez", "/readyz"):
                status, body = service.get(path)
                assert status == 200, (service.name, path, body)
                assert body["status"] == "UP"
            figures = service.metrics()
            exported |= set(figures)
        c, p, t = (s.metrics() for s in services)
        assert c["algotrade_market_events_total"] > 0
        assert c["algotrade_stored_events_total"] > 0
        assert c["algotrade_frame_to_stored_seconds_count"] > 0
        assert c["algotrade_book_synced"] == 1
        assert p["algotrade_signals_total"] > 0
        assert p["algotrade_published_signals_total"] > 0
        assert t["algotrade_acknowledged_total"] > 0
        assert t["algotrade_exchange_to_acked_seconds_count"] > 0
        assert t["process_resident_memory_bytes"] > 0

        # The dashboard and the alert rules only name metrics the services export (or,
        # for the exchange's, a trader with --gateway binance: tests/e2e/test_trading_cli.py).
        missing = stack_metric_names() - exported - GATEWAY_METRICS
        assert not missing, f"named but not exported: {sorted(missing)}"

        # Redis stops: processor and trader say so within 10 s, naming Redis.
        redis_server.stop()
        for service in (processor, trader):
            for path in ("/readyz", "/healthcheck"):
                named = partial(down_naming, service, path, "redis")
                wait_until(named, 10, f"{service.name} {path} names redis")
        assert up(collector, "/healthcheck")  # the collector does not need Redis
        redis_server.start()
        for service in (processor, trader):
            wait_until(partial(up, service, "/healthcheck"), 30, f"{service.name} back up")

        # MongoDB stops: every service names it within 10 s, and recovers.
        mongo_server.stop()
        for service in services:
            named = partial(down_naming, service, "/healthcheck", "mongodb")
            wait_until(named, 10, f"{service.name} names mongodb")
        mongo_server.start()
        for service in services:
            wait_until(partial(up, service, "/healthcheck"), 60, f"{service.name} back up")

        # The exchange goes quiet: the collector's readiness names stale market data.
        exchange.silence(12)
        wait_until(lambda: down_naming(collector, "/readyz", "market_data"), 10, "stale data")
        assert up(collector, "/healthcheck")  # its dependencies are fine
        wait_until(lambda: up(collector), 60, "collector ready again")

        # SIGTERM while busy: collector and processor drain and exit 0; the trader, once
        # it has caught up, too.
        assert collector.stop() == 0, collector.output()
        assert processor.stop() == 0, processor.output()
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            wait_until(lambda: group_state(client)["lag"] == 0, 60, "trader caught up")
            assert trader.stop() == 0, trader.output()
            group = group_state(client)
        finally:
            client.close()
    finally:
        for service in services:
            service.close()
    assert group["pending"] == 0

    signals = cli("signals", env=env)
    orders = cli("orders", env=env)
    assert len(signals) >= 2
    assert sorted(o["signal_id"] for o in orders) == sorted(s["id"] for s in signals)
    assert_depth_complete(stored_depth(mongo_url, "BTCUSDT"))
    assert '"event":"signal"' in processor.output()  # each signal: one JSON log line


def test_scale_profile_two_collectors_two_traders(
    exchange: FakeBinance, mongo_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Two collectors on disjoint symbols and two competing traders: every depth event of
    both symbols stored once, every signal of both symbols turned into exactly one order."""
    env = {
        **os.environ,
        "ALGOTRADE_MONGO_URL": mongo_url,
        "ALGOTRADE_REDIS_URL": redis_url,
        "ALGOTRADE_BINANCE_WS_URL": exchange.ws_url,
        "ALGOTRADE_BINANCE_REST_URL": exchange.rest_url,
        "ALGOTRADE_DEPTH_RETENTION": "0",
    }
    env.pop("ALGOTRADE_STORE", None)
    collectors = [
        start_service("collector", ["--symbol", "BTCUSDT", "--json"], env, tmp_path),
        start_service("collector-2", ["--symbol", "ETHUSDT", "--json"], env, tmp_path),
    ]
    processor = start_service("processor", FAST, env, tmp_path)
    traders = [
        start_service("trader", ["--consumer", "t1", "--json"], env, tmp_path),
        start_service("trader-2", ["--consumer", "t2", "--json"], env, tmp_path),
    ]
    everything = [*collectors, processor, *traders]
    try:
        wait_until(
            lambda: {s["symbol"] for s in cli("signals", env=env)} == {"BTCUSDT", "ETHUSDT"},
            150,
            "signals for both symbols",
        )
        for service in everything:
            assert up(service), (service.name, service.get("/readyz"))
        for service in [*collectors, processor]:
            assert service.stop() == 0, service.output()
        signals = cli("signals", env=env)
        wait_until(lambda: len(cli("orders", env=env)) >= len(signals), 60, "all orders")
        for service in traders:
            assert service.stop() == 0, service.output()
    finally:
        for service in everything:
            service.close()
    summaries = [json.loads(Path(s.logs[0].name).read_text()) for s in traders]
    orders = cli("orders", env=env)
    assert sorted(o["signal_id"] for o in orders) == sorted(s["id"] for s in signals)
    assert sum(s["orders"] for s in summaries) == len(signals)  # no order placed twice
    for symbol in ("BTCUSDT", "ETHUSDT"):
        events = stored_depth(mongo_url, symbol)
        assert len(events) > 20
        assert_depth_complete(events)


def test_shutdown_is_bounded_when_the_store_stays_away(
    own_servers: tuple[RedisServer, MongoServer], tmp_path: Path
) -> None:
    """A collector that cannot store its last batch (MongoDB gone) still ends: after its
    shutdown grace it exits with status 1, saying what it abandoned."""
    _, mongo_server = own_servers
    env = {
        **os.environ,
        "ALGOTRADE_MONGO_URL": with_database(mongo_server.url, "btc_data"),
        "ALGOTRADE_SHUTDOWN_GRACE": "3s",
    }
    env.pop("ALGOTRADE_STORE", None)
    collector = start_service("collector", ["--source", "synthetic", "--speed", "20"], env,
                              tmp_path)  # fmt: skip
    try:
        wait_until(lambda: collector.figure("algotrade_stored_events_total") > 0, 60,
                   "events stored")  # fmt: skip
        mongo_server.stop()
        wait_until(lambda: collector.figure("algotrade_buffered_events") > 0, 30,
                   "events waiting for MongoDB")  # fmt: skip
        started = time.monotonic()
        code = collector.stop(timeout=60)
        took = time.monotonic() - started
    finally:
        collector.close()
    assert code == 1
    assert took >= 3
    assert "shutdown exceeded its grace" in collector.output()


class _Ingest(http.server.BaseHTTPRequestHandler):
    """A stand-in for Pyroscope's push endpoint: keeps every (path, decompressed body)."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test's output quiet."""


def test_profiles_go_to_pyroscope_when_configured(tmp_path: Path) -> None:
    """With PYROSCOPE_SERVER_ADDRESS set, a service pushes CPU profiles named after it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ingest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    env = {**os.environ, "PYROSCOPE_SERVER_ADDRESS": address}
    args = ["--source", "synthetic", "--speed", "5", "--store", str(tmp_path / "p.db")]
    collector = start_service("collector", args, env, tmp_path)
    try:
        wait_until(lambda: bool(_Ingest.received), 60, "a profile pushed")
        code = collector.stop()
    finally:
        collector.close()
        server.shutdown()
        server.server_close()
    assert code == 0, collector.output()
    path, body = _Ingest.received[0]
    assert path.endswith("/Push")
    assert b"algotrade.collector" in body  # the application name
    assert b"service" in body  # the service tag
    assert b"collector.py" in body  # frames of the service's own code


def test_two_collectors_on_the_same_symbol_store_it_once(
    exchange: FakeBinance, mongo_url: str, tmp_path: Path
) -> None:
    """A hot standby: two live collectors on one symbol (each with its own snapshot) store
    one stream: one snapshot, every diff once and continuous, no false gap."""
    env = {
        **os.environ,
        "ALGOTRADE_MONGO_URL": mongo_url,
        "ALGOTRADE_BINANCE_WS_URL": exchange.ws_url,
        "ALGOTRADE_BINANCE_REST_URL": exchange.rest_url,
        "ALGOTRADE_DEPTH_RETENTION": "0",
    }
    env.pop("ALGOTRADE_STORE", None)
    pair = [
        start_service(name, ["--symbol", "BTCUSDT", "--json"], env, tmp_path)
        for name in ("collector", "collector-2")
    ]
    try:
        wait_until(lambda: all(s.figure("algotrade_stored_events_total") > 0 for s in pair),
                   60, "both collectors storing")  # fmt: skip
        time.sleep(5)
        codes = [s.stop() for s in pair]
    finally:
        for service in pair:
            service.close()
    assert codes == [0, 0]
    summaries = [json.loads(Path(s.logs[0].name).read_text()) for s in pair]
    depth = stored_depth(mongo_url, "BTCUSDT")
    assert_depth_complete(depth)
    diffs = [e for e in depth if isinstance(e, DepthDiffReceived)]
    assert len(diffs) > 50
    ids = [d.final_update_id for d in diffs]
    assert ids == sorted(set(ids))  # each diff once, in order
    for i, event in enumerate(depth):  # a standby starting late records its own restart
        if isinstance(event, SequenceGapDetected):
            assert event.reason is GapReason.RESTART
            assert isinstance(depth[i + 1], BookSnapshotTaken)  # a snapshot makes it whole
    assert sum(s["duplicates"] for s in summaries) > 0  # they really did overlap
