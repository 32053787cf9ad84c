"""`algotrade download` against a fake data.binance.vision: monthly archives, daily ones
where a month is not published, checksums verified (a bad one keeps nothing), a cut
download resumed with a byte range, and `backtest --data SYMBOL:INTERVAL` reading what was
kept."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from algotrade.adapters.binance.archives import Archive, days_of, parse_day, plan
from algotrade.apps.cli import app
from algotrade.apps.logs import configure_logging
from algotrade.domain.errors import ConfigurationError
from tests.support.fake_binance_data import FakeArchiveServer, serving

MONTHLY = "/data/spot/monthly/klines/BTCUSDT/1h"
DAILY = "/data/spot/daily/klines/BTCUSDT/1h"


@pytest.fixture
def server() -> Iterator[FakeArchiveServer]:
    """A fake archive server with January and March 2024 as months, February as days
    (its 14th missing), for BTCUSDT 1h."""
    fake = FakeArchiveServer()
    fake.add_month("BTCUSDT", "1h", date(2024, 1, 1))
    fake.add_month("BTCUSDT", "1h", date(2024, 3, 1))
    for day in range(1, 30):
        if day != 14:
            fake.add_day("BTCUSDT", "1h", date(2024, 2, day))
    with serving(fake):
        yield fake


def invoke(args: list[str], data_dir: Path) -> Result:
    """Run the CLI in-process with the data directory set; restore logging after."""
    try:
        return CliRunner().invoke(app, args, env={"ALGOTRADE_DATA_DIR": str(data_dir)})
    finally:
        configure_logging(sys.stderr)  # a command logs into the runner's stream, closed after


def download(server: FakeArchiveServer, data_dir: Path, *extra: str) -> Result:
    """Download BTCUSDT 1h, January to March 2024, from the fake server."""
    return invoke(["download", "BTCUSDT", "--interval", "1h", "--start", "2024-01",
                   "--end", "2024-03", "--base-url", server.url, "--json", *extra],
                  data_dir)  # fmt: skip


def test_the_plan_is_months_where_whole_and_days_elsewhere() -> None:
    """Whole months before today's are monthly archives; a cut month or the running one
    are days, up to yesterday; an empty range is refused."""
    today = date(2024, 3, 10)
    names = [a.name for a in plan("btcusdt", "1m", date(2024, 1, 15), date(2024, 12, 31), today)]
    assert names[:17] == [f"BTCUSDT-1m-2024-01-{d:02}.zip" for d in range(15, 32)]
    assert names[17] == "BTCUSDT-1m-2024-02.zip"
    assert names[18:] == [f"BTCUSDT-1m-2024-03-{d:02}.zip" for d in range(1, 10)]
    month = Archive("BTCUSDT", "1m", date(2024, 2, 1))
    assert len(days_of(month, date(2024, 1, 1), date(2024, 2, 10))) == 10
    assert parse_day("2024-02", end=True) == date(2024, 2, 29)
    day = today
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: parse_day("2024/02"), "is not YYYY-MM"),
        (lambda: plan("BTC-USDT", "1m", day, day, day), "not a Binance"),
        (lambda: plan("BTCUSDT", "7m", day, day, day), "the archives have"),
        (lambda: plan("BTCUSDT", "1m", day, day, day), "no day before"),
    ]
    for bad, says in cases:
        with pytest.raises(ConfigurationError, match=says):
            bad()


def test_download_keeps_verified_archives_and_backtest_reads_them(
    server: FakeArchiveServer, tmp_path: Path
) -> None:
    """Two months and February's published days are kept with their checksums; the
    missing day is named; a second run downloads nothing; `backtest --data BTCUSDT:1h`
    reads every kept hour in order."""
    done = download(server, tmp_path)
    assert done.exit_code == 0, done.output
    got = json.loads(done.stdout)["symbols"]["BTCUSDT"]
    assert got["kept"][0] == "BTCUSDT-1h-2024-01.zip"
    assert got["kept"][-1] == "BTCUSDT-1h-2024-03.zip"
    assert len(got["kept"]) == 2 + 28  # February not published as a month: its days
    assert got["missing"] == ["BTCUSDT-1h-2024-02-14.zip"]
    assert got["failed"] == []
    kept = tmp_path / "spot" / "monthly" / "klines" / "BTCUSDT" / "1h" / "BTCUSDT-1h-2024-01.zip"
    assert kept.exists()
    assert kept.with_name(kept.name + ".CHECKSUM").exists()
    assert not list(tmp_path.rglob("*.part"))

    served = len(server.requests)
    again = download(server, tmp_path)
    assert again.exit_code == 0, again.output
    body = json.loads(again.stdout)["symbols"]["BTCUSDT"]
    assert body["kept"] == []
    assert len(body["present"]) == 30
    assert [p for p, _ in server.requests[served:] if p.endswith(".zip")] == []  # checksums only

    tested = invoke(["backtest", "--data", "BTCUSDT:1h", "--short", "5", "--long", "20",
                     "--json"], tmp_path)  # fmt: skip
    assert tested.exit_code == 0, tested.output
    metrics = json.loads(tested.stdout)["metrics"]
    assert metrics["bars"] == (31 + 28 + 31) * 24
    assert metrics["symbol"] == "BTCUSDT"
    assert metrics["interval"] == "1h"
    assert metrics["signals"] > 0


def test_a_bad_checksum_keeps_nothing_and_exits_1(
    server: FakeArchiveServer, tmp_path: Path
) -> None:
    """An archive whose SHA-256 is not the published one is named and not kept (nor its
    part); the others are kept; the exit status is 1."""
    server.bad_checksums.add(f"{MONTHLY}/BTCUSDT-1h-2024-03.zip")
    done = download(server, tmp_path)
    assert done.exit_code == 1, done.output
    got = json.loads(done.stdout)["symbols"]["BTCUSDT"]
    assert [f["archive"] for f in got["failed"]] == ["BTCUSDT-1h-2024-03.zip"]
    assert "is not the published" in got["failed"][0]["error"]
    assert "BTCUSDT-1h-2024-01.zip" in got["kept"]
    assert not list(tmp_path.rglob("BTCUSDT-1h-2024-03.zip*"))


def test_a_cut_download_resumes_from_its_last_byte(
    server: FakeArchiveServer, tmp_path: Path
) -> None:
    """A connection cut mid-body is retried with a byte range from what was written; with
    no retry left the part is kept, the exit status is 1, and a rerun resumes it."""
    path = f"{MONTHLY}/BTCUSDT-1h-2024-01.zip"
    half = len(server.files[path]) // 2
    server.cuts[path] = half
    done = download(server, tmp_path)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["symbols"]["BTCUSDT"]["resumed"] == 1
    assert (path, f"bytes={half}-") in server.requests
    kept = tmp_path / path.removeprefix("/data/")
    assert kept.read_bytes() == server.files[path]

    later = f"{MONTHLY}/BTCUSDT-1h-2024-03.zip"
    server.cuts[later] = 1000
    tmp_path = tmp_path / "second"  # March not kept yet
    cut = invoke(["download", "BTCUSDT", "--interval", "1h", "--start", "2024-03", "--end",
                  "2024-03", "--base-url", server.url, "--retries", "0"], tmp_path)  # fmt: skip
    assert cut.exit_code == 1, cut.output
    assert "a rerun resumes" in cut.stdout
    part = tmp_path / (later.removeprefix("/data/") + ".part")
    assert part.stat().st_size == 1000
    rerun = invoke(["download", "BTCUSDT", "--interval", "1h", "--start", "2024-03", "--end",
                    "2024-03", "--base-url", server.url, "--json"], tmp_path)  # fmt: skip
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["symbols"]["BTCUSDT"]["resumed"] == 1
    assert (later, "bytes=1000-") in server.requests
    assert (tmp_path / later.removeprefix("/data/")).read_bytes() == server.files[later]
    assert not part.exists()


def test_bad_options_and_a_missing_data_set_exit_2(tmp_path: Path) -> None:
    """A bad date or symbol exits 2 before any request; `backtest --data` of a data set
    never downloaded says how to download it."""
    for args, says in [(["--start", "2024-13"], "is not YYYY-MM"),
                       (["--interval", "2m"], "the archives have")]:  # fmt: skip
        done = invoke(["download", "BTCUSDT", "--base-url", "http://127.0.0.1:9", *args],
                      tmp_path)  # fmt: skip
        assert done.exit_code == 2, done.output
        assert says in done.stderr
    missing = invoke(["backtest", "--data", "ETHUSDT:1h"], tmp_path)
    assert missing.exit_code == 2, missing.output
    assert "algotrade download ETHUSDT --interval 1h" in missing.stderr


def test_download_backtest_walk_forward_and_report_as_processes(
    server: FakeArchiveServer, tmp_path: Path
) -> None:
    """The documented chain as a user runs it, each a process: download, backtest the data
    set, validate a search on it walk-forward, report the validation."""
    import subprocess

    env = {**os.environ, "ALGOTRADE_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "algotrade", *args], capture_output=True,
                              text=True, env=env, timeout=300, check=False)  # fmt: skip

    fetched = run("download", "BTCUSDT", "--interval", "1h", "--start", "2024-01", "--end",
                  "2024-03", "--base-url", server.url)  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    assert "backtest: algotrade backtest --data BTCUSDT:1h" in fetched.stdout
    assert "[download]" in fetched.stderr  # the progress line
    tested = run("backtest", "--data", "BTCUSDT:1h", "--short", "5", "--long", "20")
    assert tested.returncode == 0, tested.stderr
    assert "2160" in tested.stdout.replace(",", "")  # (31 + 28 + 31) days of hours
    walked = run("optimize", "--data", "BTCUSDT:1h", "--param", "short=3..9:3", "--param",
                 "long=12,24", "--walk-forward", "3", "--json")  # fmt: skip
    assert walked.returncode == 0, walked.stderr
    body = json.loads(walked.stdout)
    assert body["kind"] == "walk_forward"
    assert len(body["windows"]) == 3
    (tmp_path / "walk.json").write_text(walked.stdout)
    drawn = run("report", "--optimization", str(tmp_path / "walk.json"), "--out",
                str(tmp_path / "walk.html"))  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "walk.html").read_text().count('class="chosen"') == 3
