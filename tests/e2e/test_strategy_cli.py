"""A strategy kept in a file outside the package, through every command as a user runs
them: backtest, report, parity, run over Redis, and the processor service on MongoDB; its
signals carry its name, parameters and indicator values in each store and on the stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pymongo
import redis

from tests.conftest import ROOT
from tests.e2e.test_cli import algotrade

STRATEGY = ["--strategy", str(ROOT / "strategies" / "breakout.py") + ":Breakout",
            "--param", "window=12", "--param", "margin=0.0001"]  # fmt: skip
PARAMS = {"window": 12, "margin": "0.0001"}


def test_a_file_strategy_backtests_and_reports(tmp_path: Path) -> None:
    """backtest and report run the file's strategy with its parameters; the report shows
    its indicator values at the signals."""
    done = algotrade("backtest", "--synthetic", "--bars", "2000", *STRATEGY, "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["metrics"]["signals"] > 4
    first = body["signals"][0]
    assert (first["strategy"], first["params"]) == ("breakout", PARAMS)
    assert set(first["indicators"]) == {"high"}
    out = tmp_path / "report.html"
    drawn = algotrade("report", "--synthetic", "--bars", "2000", *STRATEGY, "--out", str(out))
    assert drawn.returncode == 0, drawn.stderr
    page = out.read_text()
    assert "breakout(window=12, margin=0.0001)" in page
    assert ", high " in page  # a BUY marker's indicator value


def test_a_file_strategy_has_parity(recording: Path) -> None:
    """`algotrade parity --strategy FILE:Class` proves the live path equals the backtest."""
    done = algotrade("parity", "--data", str(recording), "--interval", "1s",
                     "--symbol", "BTCUSDT", *STRATEGY[:2], "--param", "window=6")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical: every signal, id and field alike" in done.stdout


def test_run_over_redis_carries_the_strategy_on_the_stream(tmp_path: Path, redis_url: str) -> None:
    """`run --strategy` stores its signals with name, parameters and indicators, and the
    Redis stream's entries carry the same."""
    db = tmp_path / "run.db"
    done = algotrade("run", "--interval", "1m", *STRATEGY, "--duration", "6s", "--store",
                     str(db), "--redis-url", redis_url, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["signals"] >= 1
    assert summary["orders"] == summary["signals"]
    listed = json.loads(algotrade("signals", "--store", str(db), "--json").stdout)
    assert {(s["strategy"], json.dumps(s["params"])) for s in listed} == {
        ("breakout", json.dumps(PARAMS))
    }
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = client.xrange("trade_signals_stream")
    finally:
        client.close()
    assert len(entries) == summary["signals"]  # type: ignore[arg-type]  # a list of entries
    fields: dict[str, str] = entries[0][1]  # type: ignore[index, assignment]  # decoded
    assert (fields["strategy"], json.loads(fields["params"])) == ("breakout", PARAMS)
    assert set(json.loads(fields["indicators"])) <= {"high", "low"}


def test_the_processor_service_runs_it_on_mongodb(mongo_url: str) -> None:
    """The processor service, given the strategy by --strategy, stores its signals in
    MongoDB's trade_signals with name, parameters and indicator values."""
    collected = algotrade("collector", "--source", "synthetic", "--speed", "max", "--duration",
                          "2s", "--store", mongo_url, "--port", "0", "--json")  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    # 1s bars: the MongoDB stand-in stores fewer events in those seconds than SQLite
    processed = algotrade("processor", "--interval", "1s", *STRATEGY, "--store", mongo_url,
                          "--no-warmup", "--duration", "12s", "--port", "0", "--json")  # fmt: skip
    assert processed.returncode == 0, processed.stderr
    summary = json.loads(processed.stdout)
    assert summary["signals"] >= 1, summary
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url)
    try:
        docs = list(client.get_default_database()["trade_signals"].find())
    finally:
        client.close()
    assert docs
    assert {(d["strategy"], json.dumps(d["params"])) for d in docs} == {
        ("breakout", json.dumps(PARAMS))
    }
    assert all(len(d["indicators"]) == 1 for d in docs)
