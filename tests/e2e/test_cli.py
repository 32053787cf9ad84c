"""The ``algotrade`` command as users run it: real processes, real files, real signals."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.domain.events import BookSnapshotTaken, Event, OrderPlaced, SignalEmitted
from tests.support.fake_binance import FakeBinance

FAST = ["--interval", "1m", "--short", "3", "--long", "8"]


def algotrade(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion and return its result."""
    return subprocess.run(
        [sys.executable, "-m", "algotrade", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the CLI in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "algotrade", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def stored(path: Path, kind: type[Event]) -> list[Event]:
    """Return every stored event of one type from a SQLite store."""

    async def read() -> list[Event]:
        store = SqliteEventStore(path)
        try:
            return [s.event for s in await store.read_all(0, limit=10**9, types=(kind,))]
        finally:
            await store.close()

    return anyio.run(read)


def test_run_synthetic_prints_a_summary_and_stores_signals_and_orders(tmp_path: Path) -> None:
    """`algotrade run` on the synthetic source ends after --duration with one order per signal."""
    db = tmp_path / "run.db"
    result = algotrade("run", *FAST, "--duration", "6s", "--store", str(db), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["events"] > 10_000
    assert summary["signals"] >= 2
    assert summary["orders"] == summary["signals"]
    assert "BTCUSDT" in summary["positions"]
    assert "[run]" in result.stderr  # progress lines

    listed = algotrade("signals", "--store", str(db), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == summary["signals"]
    for row in rows:
        assert {"id", "symbol", "side", "price", "short_sma", "long_sma", "bar_time"} <= set(row)
        assert row["side"] in {"BUY", "SELL"}
        assert row["bar_time"].endswith("Z")
    assert len({r["id"] for r in rows}) == len(rows)
    table = algotrade("signals", "--store", str(db))
    assert f"{len(rows)} signal(s)" in table.stdout


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--short", "-5"], "--short"),
        (["--short", "200", "--long", "50"], "--short"),
        (["--long", "0"], "--long"),
        (["--interval", "7x"], "--interval"),
        (["--speed", "fast"], "--speed"),
        (["--duration", "soon"], "--duration"),
        (["--binance-ws-url", "http://not-a-websocket"], "--binance-ws-url"),
        (["--source", "replay:/nonexistent.raw"], "--source"),
        (["--quantity", "-1"], "--quantity"),
        (["--symbol", "BTC/USDT"], "--symbol"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_options_exit_2_naming_the_option(args: list[str], option: str, tmp_path: Path) -> None:
    """A malformed or unknown option exits with status 2 and a message naming it."""
    result = algotrade("run", "--store", str(tmp_path / "x.db"), *args, timeout=60)
    assert result.returncode == 2
    assert option in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_environment_variables_configure_options(tmp_path: Path) -> None:
    """ALGOTRADE_* variables stand in for options, and are validated the same way."""
    env = {**os.environ, "ALGOTRADE_SHORT": "300"}
    result = subprocess.run(
        [sys.executable, "-m", "algotrade", "run", "--store", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "--short" in result.stderr


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        ("trader", "ALGOTRADE_MAX_LAG", "0"),
        ("processor", "ALGOTRADE_OUTBOX_MAX_AGE", "soon"),
        ("collector", "ALGOTRADE_HTTP_PORT", "70000"),
        ("collector", "ALGOTRADE_STALE_AFTER", "-1s"),
        ("trader", "PYROSCOPE_SERVER_ADDRESS", "pyroscope:4040"),
    ],
)
def test_a_bad_service_setting_exits_2_naming_its_variable(
    command: str, variable: str, value: str, tmp_path: Path
) -> None:
    """A service refuses a malformed setting at start-up, naming the variable to fix."""
    env = {**os.environ, variable: value}
    result = algotrade(command, "--store", str(tmp_path / "x.db"), timeout=60, env=env)
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr


def test_a_taken_port_is_a_clear_start_up_error(tmp_path: Path) -> None:
    """A service whose port is taken exits with status 2 naming --port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = algotrade(
            "trader", "--store", str(tmp_path / "x.db"), "--host", "127.0.0.1",
            "--port", str(port), timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    assert "--port" in result.stderr
    assert "cannot listen" in result.stderr


def test_collector_replays_the_recording_and_exits_0(recording: Path, tmp_path: Path) -> None:
    """A collector on a replay source stores every symbol's events and ends with the file."""
    db = tmp_path / "replay.db"
    result = algotrade(
        "collector",
        "--source",
        f"replay:{recording}",
        "--symbol",
        "BTCUSDT,ETHUSDT",
        "--symbol",
        "DOTUSDT",
        "--store",
        str(db),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["gaps"] == 0
    assert summary["rejected_inputs"] == 0
    assert summary["stored"] > 4000
    again = algotrade("collector", "--source", f"replay:{recording}", "--store", str(db), "--json")
    assert json.loads(again.stdout)["stored"] == 0  # nothing is stored twice


def test_three_processes_cooperate_on_one_store(tmp_path: Path) -> None:
    """Collector, processor and trader as separate processes: every signal gets one order."""
    db = tmp_path / "shared.db"
    processor = start("processor", *FAST, "--store", str(db))
    trader = start("trader", "--store", str(db))
    try:
        collector = algotrade(
            "collector", "--source", "synthetic", "--duration", "6s", "--store", str(db), "--json"
        )
        assert collector.returncode == 0, collector.stderr
        time.sleep(2)  # let the processor work through what the collector stored
        processor.send_signal(signal.SIGTERM)
        processor_err = processor.communicate(timeout=60)[1]
        assert processor.returncode == 0, processor_err
        signals = stored(db, SignalEmitted)
        deadline = time.monotonic() + 60
        while len(stored(db, OrderPlaced)) < len(signals) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for proc in (processor, trader):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        trader_err = trader.communicate(timeout=30)[1]
    assert trader.returncode == 0, trader_err
    orders = stored(db, OrderPlaced)
    assert len(signals) >= 2
    assert sorted(o.signal_id for o in orders if isinstance(o, OrderPlaced)) == sorted(
        s.signal_id for s in signals if isinstance(s, SignalEmitted)
    )


def test_sigint_stops_run_cleanly_with_everything_flushed(tmp_path: Path) -> None:
    """Ctrl-C ends `run` with status 0, a summary, and every received event stored."""
    db = tmp_path / "int.db"
    proc = start("run", *FAST, "--store", str(db), "--json")
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert "SIGINT" in err
    assert summary["events"] > 0
    assert summary["signals"] >= 1  # not 0 == 0: the run got as far as acting on signals
    assert summary["orders"] == summary["signals"]


def test_run_over_redis_and_the_read_commands(tmp_path: Path, redis_url: str) -> None:
    """`run --redis-url` relays every signal through the stream; orders/positions/tail show it."""
    import redis

    db = tmp_path / "redis-run.db"
    result = algotrade(
        "run", *FAST, "--duration", "6s", "--store", str(db), "--redis-url", redis_url, "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["signals"] >= 2
    assert summary["orders"] == summary["signals"]
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.xlen("trade_signals_stream") == summary["signals"]
        assert client.xpending("trade_signals_stream", "signal_group")["pending"] == 0
        assert client.exists("trade_signals_dead") == 0
    finally:
        client.close()

    orders = json.loads(algotrade("orders", "--store", str(db), "--json").stdout)
    assert len(orders) == summary["signals"]
    for order in orders:
        assert {"id", "signal_id", "symbol", "side", "quantity", "price", "status"} <= set(order)
        assert order["status"] in {"FILLED", "REJECTED"}
    positions = json.loads(algotrade("positions", "--store", str(db), "--json").stdout)
    assert [p["symbol"] for p in positions] == ["BTCUSDT"]
    assert "order(s)" in algotrade("orders", "--store", str(db)).stdout

    tail = algotrade(
        "signals", "tail", "--redis-url", redis_url, "--from-start", "--count", "2", timeout=30
    )
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(lines) == 2
    assert {"entry", "signal_id", "side", "price", "schema"} <= set(lines[0])


def test_processor_and_trader_processes_over_redis(tmp_path: Path, redis_url: str) -> None:
    """Separate processor and trader processes meet over Redis: one order per signal."""
    db = tmp_path / "split.db"
    collected = algotrade(
        "collector", "--source", "synthetic", "--duration", "5s", "--store", str(db)
    )
    assert collected.returncode == 0, collected.stderr
    processor = start("processor", *FAST, "--store", str(db), "--redis-url", redis_url)
    trader = start("trader", "--store", str(db), "--redis-url", redis_url, "--consumer", "t1")
    try:
        deadline = time.monotonic() + 60
        while not stored(db, SignalEmitted) and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(3)  # the processor works through the stored market data
        processor.send_signal(signal.SIGTERM)  # stops after publishing what it stored
        processor_err = processor.communicate(timeout=60)[1]
        signals = stored(db, SignalEmitted)
        while len(stored(db, OrderPlaced)) < len(signals) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for proc in (processor, trader):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        trader_err = trader.communicate(timeout=30)[1]
    assert processor.returncode == 0, processor_err
    assert trader.returncode == 0, trader_err
    orders = stored(db, OrderPlaced)
    assert len(signals) >= 2
    assert sorted(o.signal_id for o in orders if isinstance(o, OrderPlaced)) == sorted(
        s.signal_id for s in signals if isinstance(s, SignalEmitted)
    )


def test_services_on_mongodb_and_redis(recording: Path, mongo_url: str, redis_url: str) -> None:
    """ALGOTRADE_MONGO_URL puts every command on MongoDB: one order per signal, listed."""
    # Retention 0: the recording is from 2021, a TTL of days would expire it at once.
    env = {**os.environ, "ALGOTRADE_MONGO_URL": mongo_url, "ALGOTRADE_DEPTH_RETENTION": "0"}
    env.pop("ALGOTRADE_STORE", None)
    collected = algotrade("collector", "--source", f"replay:{recording}", "--json", env=env)
    assert collected.returncode == 0, collected.stderr
    assert json.loads(collected.stdout)["stored"] > 1000
    again = algotrade("collector", "--source", f"replay:{recording}", "--json", env=env)
    assert json.loads(again.stdout)["stored"] == 0  # nothing is stored twice

    every_second = ["--interval", "1s", "--short", "3", "--long", "8"]
    processor = start("processor", *every_second, "--redis-url", redis_url, env=env)
    trader = start("trader", "--redis-url", redis_url, "--consumer", "m1", env=env)
    try:
        deadline = time.monotonic() + 90
        signals: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            time.sleep(1.0)
            listed = json.loads(algotrade("signals", "--json", env=env).stdout)
            if listed and listed == signals:
                break  # the processor has worked through the stored data
            signals = listed
        processor.send_signal(signal.SIGTERM)
        processor_err = processor.communicate(timeout=60)[1]
        orders: list[dict[str, object]] = []
        while len(orders) < len(signals) and time.monotonic() < deadline:
            time.sleep(0.5)
            orders = json.loads(algotrade("orders", "--json", env=env).stdout)
    finally:
        for proc in (processor, trader):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        trader_err = trader.communicate(timeout=30)[1]
    assert processor.returncode == 0, processor_err
    assert trader.returncode == 0, trader_err
    assert len(signals) >= 2
    assert sorted(str(o["signal_id"]) for o in orders) == sorted(str(s["id"]) for s in signals)


@pytest.fixture
def fake_exchange() -> Iterator[FakeBinance]:
    """Run a fake Binance exchange in a thread of its own while the test runs commands."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(FakeBinance(("BTCUSDT",), rate=50.0)) as fake,
    ):
        yield fake


def test_collector_on_the_fake_exchange_then_depth_and_gaps(
    fake_exchange: FakeBinance, tmp_path: Path
) -> None:
    """`algotrade collector` (live by default) on the fake exchange; `depth` and `gaps` list."""
    db = tmp_path / "live.db"
    env = {
        **os.environ,
        "ALGOTRADE_BINANCE_WS_URL": fake_exchange.ws_url,
        "ALGOTRADE_BINANCE_REST_URL": fake_exchange.rest_url,
    }
    result = algotrade("collector", "--duration", "3s", "--store", str(db), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stored"] > 20
    assert "[collector]" in result.stderr  # the progress line

    listed = algotrade("depth", "--symbol", "btcusdt", "--store", str(db), "--json")
    rows = json.loads(listed.stdout)
    assert rows[0]["kind"] == "snapshot"
    diffs = [r for r in rows if r["kind"] == "diff"]
    assert len(diffs) > 20
    # The last progress line shows the prices: the top of book after the last stored diff.
    last = [line for line in result.stderr.splitlines() if line.startswith("[collector]")][-1]
    bid, ask = diffs[-1]["best_bid"][0], diffs[-1]["best_ask"][0]
    assert f" BTCUSDT {bid}/{ask} events=" in last
    for before, after in itertools.pairwise(diffs):
        assert after["first_update_id"] == before["final_update_id"] + 1
    first = diffs[0]
    assert {"symbol", "event_time", "best_bid", "best_ask"} <= set(first)
    assert first["event_time"].endswith("Z")
    assert Decimal(first["best_bid"][0]) < Decimal(first["best_ask"][0])
    assert json.loads(algotrade("gaps", "--store", str(db), "--json").stdout) == []

    # Run again: the exchange moved on meanwhile, so the restart is a recorded gap.
    again = algotrade("collector", "--duration", "3s", "--store", str(db), "--json", env=env)
    assert again.returncode == 0, again.stderr
    gaps = json.loads(algotrade("gaps", "--store", str(db), "--json").stdout)
    assert len(gaps) == 1
    assert gaps[0]["missing"] > 0
    assert "gap(s)" in algotrade("gaps", "--store", str(db)).stdout


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_recording_that_cannot_be_written_stops_with_one_line(
    fake_exchange: FakeBinance,
) -> None:
    """A full disk ends `algotrade record` at the first line it cannot keep, exit 1, one
    line; it used to count the failure as a dropped connection and reconnect, losing every
    frame while it reported the lines as recorded and exited 0."""
    result = algotrade(
        "record", "--out", "/dev/full", "--duration", "20s", "--json",
        "--binance-ws-url", fake_exchange.ws_url, "--binance-rest-url", fake_exchange.rest_url,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""  # no summary: nothing was recorded
    last = result.stderr.strip().splitlines()[-1]
    assert last == "algotrade: cannot write the recording '/dev/full': No space left on device"
    assert "Traceback" not in result.stderr
    assert "reconnect" not in result.stderr


def replay_into(db: Path, recording: Path) -> dict[str, Any]:
    """Replay a recording with the collector into a new store; return its summary."""
    replayed = algotrade("collector", "--source", f"replay:{recording}", "--store", str(db),
                         "--json")  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    figures: dict[str, Any] = json.loads(replayed.stdout)
    return figures


def test_a_compressed_recording_replays_and_a_killed_one_keeps_all_but_its_last_second(
    fake_exchange: FakeBinance, tmp_path: Path
) -> None:
    """`record --out x.raw.gz` writes gzip (it used to be refused: a recording was plain
    text only, 10x the disk): it replays into the same books; a recorder killed without a
    chance to close leaves a file that replays up to the cut; recording again appends."""
    packed = tmp_path / "session.raw.gz"
    urls = ("--binance-ws-url", fake_exchange.ws_url, "--binance-rest-url", fake_exchange.rest_url)
    result = algotrade("record", "--out", str(packed), "--duration", "3s", "--json", *urls)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    with gzip.open(packed, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert summary["lines"] == len(lines) > 50
    assert packed.stat().st_size * 3 < sum(len(line) + 1 for line in lines)

    figures = replay_into(tmp_path / "offline.db", packed)
    assert (figures["gaps"], figures["rejected_inputs"]) == (0, 0)
    assert figures["stored"] > 50

    again = algotrade("record", "--out", str(packed), "--duration", "2s", "--json", *urls)
    assert again.returncode == 0, again.stderr
    with gzip.open(packed, "rt", encoding="utf-8") as f:  # two gzip members, one stream
        assert len(f.read().splitlines()) == len(lines) + json.loads(again.stdout)["lines"]

    killed = tmp_path / "killed.raw.gz"
    recorder = start("record", "--out", str(killed), "--json", *urls)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not killed.exists() or killed.stat().st_size < 2000):
        time.sleep(0.2)  # flushed once a second: wait for a few flushes
    time.sleep(1.5)
    recorder.kill()  # SIGKILL: no close, no gzip trailer
    recorder.communicate()
    figures = replay_into(tmp_path / "cut.db", killed)
    assert figures["stored"] > 20
    assert figures["gaps"] == 0
    assert figures["rejected_inputs"] <= 1  # the cut, if it fell inside a line


def test_record_then_replay_offline(fake_exchange: FakeBinance, tmp_path: Path) -> None:
    """`algotrade record` writes the replay format; the replay syncs with no gap."""
    raw = tmp_path / "session.raw"
    result = algotrade(
        "record", "--out", str(raw), "--duration", "3s", "--json",
        "--binance-ws-url", fake_exchange.ws_url, "--binance-rest-url", fake_exchange.rest_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    lines = raw.read_text(encoding="utf-8").splitlines()
    assert summary["lines"] == len(lines) > 50
    assert lines[0].startswith("ws://127.0.0.1:")
    assert " <-> " in lines[0]
    assert any(line.startswith("http://") and "/api/v3/depth?" in line for line in lines)

    db = tmp_path / "offline.db"
    figures = replay_into(db, raw)
    assert (figures["gaps"], figures["rejected_inputs"]) == (0, 0)
    assert figures["stored"] > 50
    rows = json.loads(algotrade("depth", "--store", str(db), "--json").stdout)
    diffs = [r for r in rows if r["kind"] == "diff"]
    for before, after in itertools.pairwise(diffs):
        assert after["first_update_id"] == before["final_update_id"] + 1


@pytest.mark.parametrize("hours", [-3, 3])
def test_a_collector_on_an_exchange_hours_off_this_machine_makes_bars(
    hours: int, tmp_path: Path
) -> None:
    """The issue's reproduction, as a new user would try it: a collector against an
    exchange whose clock is three hours behind (or ahead of) this machine's, then a
    backtest of what it stored on 1 s bars. The snapshot is stored on the exchange's clock,
    so bars close (before: `bars 0` with the exchange behind)."""

    async def collect() -> subprocess.CompletedProcess[str]:
        async with FakeBinance(("BTCUSDT",), rate=40.0, clock_offset=hours * 3600.0) as fake:
            env = {**os.environ, "ALGOTRADE_BINANCE_WS_URL": fake.ws_url,
                   "ALGOTRADE_BINANCE_REST_URL": fake.rest_url}  # fmt: skip
            return await anyio.to_thread.run_sync(
                lambda: algotrade("collector", "--duration", "5s", "--store", str(db), env=env)
            )

    db = tmp_path / "live.db"
    done = anyio.run(collect)
    assert done.returncode == 0, done.stderr
    snapshots = stored(db, BookSnapshotTaken)
    assert snapshots
    for snapshot in snapshots:
        skew = snapshot.receive_ts - snapshot.exchange_ts
        assert abs(skew + hours * 3600 * 10**9) < 5 * 10**9, skew  # on the exchange's clock
    tested = algotrade("backtest", "--data", f"sqlite:///{db}", "--interval", "1s", "--short",
                       "2", "--long", "3", "--json")  # fmt: skip
    assert tested.returncode == 0, tested.stderr
    assert json.loads(tested.stdout)["metrics"]["bars"] >= 3
