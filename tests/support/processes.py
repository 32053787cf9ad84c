"""Services as real processes for end-to-end and chaos tests: start, probe, stop, read."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
import promql_parser
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from algotrade.adapters.mongo import MongoEventStore
from algotrade.domain.events import BookSnapshotTaken, DepthDiffReceived, Event, SequenceGapDetected
from algotrade.domain.streams import depth_stream
from tests.support.servers import MongoServer, RedisServer, free_port, local_mongo, redis_binary


@dataclass
class Service:
    """One ``algotrade`` service process, its HTTP port and its log files."""

    name: str
    port: int
    process: subprocess.Popen[str]
    logs: list[IO[str]] = field(default_factory=list)

    def url(self, path: str) -> str:
        """Return the URL of one of the service's endpoints."""
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, Any]:
        """GET an endpoint: (status, JSON body or text); (0, error) when nothing answers."""
        try:
            response = httpx.get(self.url(path), timeout=5.0)
        except httpx.HTTPError as e:
            return 0, str(e)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.status_code, response.json()
        return response.status_code, response.text

    def metrics(self) -> dict[str, float]:
        """Return every sample of /metrics summed by name (labels folded together)."""
        status, text = self.get("/metrics")
        assert status == 200, text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            out.setdefault(family.name, 0.0)
            for sample in family.samples:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
        return out

    def figure(self, name: str) -> float:
        """Return one metric's value (summed over labels); 0 while nothing answers."""
        if self.get("/livez")[0] != 200:
            return 0.0
        return self.metrics().get(name, 0.0)

    def stop(self, timeout: float = 60) -> int:
        """Send SIGTERM and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.close()
        return code

    def close(self) -> None:
        """Kill the process if it still runs; close its log files."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for log in self.logs:
            log.close()

    def output(self) -> str:
        """Return what the process wrote so far (stdout and stderr)."""
        return "".join(Path(log.name).read_text() for log in self.logs)


def start_service(name: str, args: list[str], env: dict[str, str], logdir: Path) -> Service:
    """Start ``algotrade <name> ...`` on a free port; its output goes to files."""
    port = free_port()
    out = (logdir / f"{name}-{port}.out").open("w")
    err = (logdir / f"{name}-{port}.err").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "algotrade", name.split("-")[0], *args, "--port", str(port)],
        stdout=out, stderr=err, text=True, env=env,
    )  # fmt: skip
    return Service(name, port, process, [out, err])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; return the seconds it took (fail after timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout:g}s: {what}")


def wait_up(service: Service, timeout: float, what: str, path: str = "/readyz") -> float:
    """Wait until ``service`` answers ``path`` with 200 UP; on failure the message holds the
    last answer, whether the process still runs, and the end of its output."""
    try:
        return wait_until(partial(up, service, path), timeout, what)
    except AssertionError as e:
        status, body = service.get(path)
        code = service.process.poll()
        tail = "\n".join(service.output().splitlines()[-40:])
        raise AssertionError(
            f"{e}\nlast {path}: {status} {body}\n"
            f"process: {'running' if code is None else f'exited with {code}'}\n"
            f"last output:\n{tail}"
        ) from None


def down_naming(service: Service, path: str, check: str) -> bool:
    """Return whether ``path`` answers 503 naming ``check`` as DOWN."""
    status, body = service.get(path)
    return (
        status == 503
        and isinstance(body, dict)
        and body.get("status") == "DOWN"
        and body["checks"].get(check, {}).get("status") == "DOWN"
    )


def up(service: Service, path: str = "/readyz") -> bool:
    """Return whether ``path`` answers 200 UP."""
    status, body = service.get(path)
    return status == 200 and isinstance(body, dict) and body["status"] == "UP"


def cli(*args: str, env: dict[str, str]) -> Any:
    """Run a read command with ``--json`` and return its parsed output."""
    done = subprocess.run(
        [sys.executable, "-m", "algotrade", *args, "--json"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def metric_names(expressions: list[str]) -> set[str]:
    """Return the ``algotrade_`` and ``process_`` metrics PromQL expressions select
    (histogram suffixes removed), read by a PromQL parser.

    Raises:
        ValueError: an expression is not valid PromQL (named, with the parser's reason).
    """
    names: set[str] = set()

    def collect(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name is not None:
            names.add(node.name)

    for expression in expressions:
        try:
            promql_parser.walk(promql_parser.parse(expression), pre_visit=collect)
        except ValueError as e:
            raise ValueError(f"not PromQL: {expression!r}: {e}") from None
    ours = {n for n in names if n.startswith(("algotrade_", "process_"))}
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in ours}


#: What only a trader with ``--gateway binance`` exports (the stack's default trader runs
#: the paper broker): tests/e2e/test_trading_cli.py checks that such a trader exports them.
GATEWAY_METRICS = frozenset({
    "algotrade_exchange_requests_total", "algotrade_exchange_uncertain_total",
    "algotrade_exchange_duplicates_prevented_total", "algotrade_exchange_rate_limited_total",
    "algotrade_exchange_clock_resyncs_total", "algotrade_exchange_rejections_total",
    "algotrade_working_orders", "algotrade_order_updates_total",
    "algotrade_cancelled_orders_total", "algotrade_user_stream_connections_total",
    "algotrade_user_stream_rejected_total",
})  # fmt: skip


def stack_metric_names() -> set[str]:
    """Return the metrics the Grafana dashboard and the Prometheus alert rules name."""
    root = Path(__file__).resolve().parents[2]
    dashboard = json.loads((root / "deploy/grafana/dashboards/algotrade.json").read_text())
    rules = yaml.safe_load((root / "deploy/prometheus/alerts.yml").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"] if "expr" in t]
    expressions += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return metric_names(expressions)


def stored_depth(url: str, symbol: str) -> list[Event]:
    """Return a symbol's stored depth stream."""

    async def read() -> list[Event]:
        store = MongoEventStore(url, give_up_after=30.0)
        try:
            return await store.read_stream(depth_stream(symbol))
        finally:
            await store.close()

    return anyio.run(read)


def assert_depth_complete(events: list[Event]) -> None:
    """Every version once, in order; diffs continuous except right after a recorded gap."""
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    reach = 0  # the last update id stored so far (diffs, snapshots)
    gap_before = False
    for i, event in enumerate(events):
        if isinstance(event, SequenceGapDetected):
            gap_before = True
            continue
        if isinstance(event, DepthDiffReceived):
            first, last = event.first_update_id, event.final_update_id
        elif isinstance(event, BookSnapshotTaken):
            first, last = event.last_update_id + 1, event.last_update_id
        else:
            continue
        if reach and not gap_before:
            context = "\n".join(_brief(e) for e in events[max(0, i - 6) : i + 3])
            assert first <= reach + 1, (
                f"updates {reach + 1}..{first - 1} missing without a gap at version "
                f"{event.version}:\n{context}"
            )
            assert last > reach, f"version {event.version} goes back to {last}:\n{context}"
        reach, gap_before = max(reach, last), False


def _brief(event: Event) -> str:
    """One line per depth event, for failure messages."""
    if isinstance(event, DepthDiffReceived):
        what = f"diff {event.first_update_id}..{event.final_update_id}"
    elif isinstance(event, SequenceGapDetected):
        what = f"gap {event.reason} expected {event.expected_update_id} "
        what += f"received {event.received_update_id}"
    else:
        what = f"{type(event).__name__} {getattr(event, 'last_update_id', '')}"
    return f"  v{event.version} {what} received {event.receive_ts}"


@contextlib.contextmanager
def private_servers() -> Iterator[tuple[RedisServer, MongoServer] | None]:
    """Start a private Redis (append-only) and MongoDB a test may stop and restart; yield
    ``None`` when this machine has no local binaries for them."""
    binary = redis_binary()
    with tempfile.TemporaryDirectory(prefix="algotrade-outage-") as workdir:
        mongo = local_mongo(workdir)
        if binary is None or mongo is None:
            yield None
            return
        redis_dir = Path(workdir) / "redis"
        redis_dir.mkdir()
        server = RedisServer(binary, free_port(), str(redis_dir), persistent=True)
        server.start()
        mongo.start()
        try:
            yield server, mongo
        finally:
            server.stop()
            mongo.stop()


def group_state(client: redis.Redis) -> dict[str, int]:
    """Return the trader group's lag (entries after its last delivered id) and pending."""
    (group,) = client.xinfo_groups("trade_signals_stream")
    after = "(" + str(group["last-delivered-id"])
    lag = len(client.xrange("trade_signals_stream", min=after))  # type: ignore[arg-type]
    return {"lag": lag, "pending": int(group["pending"])}
