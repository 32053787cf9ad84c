"""`algotrade backtest`, `parity` and `report` as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.e2e.test_cli import algotrade
from tests.unit.test_backtest import HEADER, kline_rows


def test_backtest_synthetic_prints_a_summary_table() -> None:
    """`backtest --synthetic` ends with status 0 and prints every figure of the summary."""
    done = algotrade("backtest", "--synthetic", "--bars", "3000", "--short", "20", "--long", "60")
    assert done.returncode == 0, done.stderr
    for figure in ("total_return", "max_drawdown", "sharpe", "win_rate", "trades", "fees_paid"):
        assert figure in done.stdout


def test_backtest_json_has_signals_trades_and_metrics(tmp_path: Path) -> None:
    """--json: the signals are the objects `algotrade signals --json` prints."""
    path = tmp_path / "BTCUSDT-1h-2024-01.csv"
    rows = kline_rows(400)
    rows[10] = "broken,row"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    done = algotrade("backtest", "--data", str(path), "--short", "3", "--long", "9", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"signals", "trades", "metrics"}
    assert body["metrics"]["bars"] == 399
    assert body["signals"]
    assert set(body["signals"][0]) == {
        "id", "symbol", "side", "price", "short_sma", "long_sma", "bar_time", "interval",
        "strategy", "params", "indicators", "emitted_at",
    }  # fmt: skip
    assert "line 12" in done.stderr  # the skipped row, by its line number


def test_backtest_shows_progress_on_long_runs() -> None:
    """A backtest of 300,000 bars shows its progress line on stderr."""
    done = algotrade("backtest", "--synthetic", "--bars", "300000", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "[backtest]" in done.stderr
    assert "300,000/300,000 bars" in done.stderr


def test_backtest_option_errors_exit_2() -> None:
    """A backtest given no history exits with status 2 naming the options it needs."""
    done = algotrade("backtest")
    assert done.returncode == 2
    assert "--data" in done.stderr
    done = algotrade("backtest", "--synthetic", "--fee", "-1")
    assert done.returncode == 2
    assert "--fee" in done.stderr


def test_parity_on_the_recorded_session(recording: Path) -> None:
    """Real Binance frames: the live path and the backtest give the same signals."""
    done = algotrade(
        "parity", "--data", str(recording), "--symbol", "BTCUSDT", "--interval", "1s",
        "--short", "5", "--long", "20",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "identical" in done.stdout
    assert "6 signals" in done.stdout


def test_report_html_from_a_backtest_and_from_the_store(tmp_path: Path) -> None:
    """A report of a backtest, then one of what `algotrade run` stored live."""
    out = tmp_path / "backtest.html"
    done = algotrade("report", "--synthetic", "--bars", "2000", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text().count('class="marker ') > 0
    db = tmp_path / "live.db"
    env = {**os.environ, "ALGOTRADE_STORE": str(db)}
    ran = algotrade("run", "--interval", "1m", "--short", "3", "--long", "8", "--duration", "15",
                    env=env)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    live = tmp_path / "live.html"
    done = algotrade("report", "--store", str(db), "--interval", "1m", "--short", "3",
                     "--long", "8", "--out", str(live))  # fmt: skip
    assert done.returncode == 0, done.stderr
    signals = algotrade("signals", "--json", env=env)
    count = len(json.loads(signals.stdout))
    assert count > 0
    assert live.read_text().count('class="marker ') == count
    # Without --interval (1d by default), the error names the intervals that are stored.
    done = algotrade("report", "--store", str(db), "--out", str(live))
    assert done.returncode == 2
    assert "no stored 1d bars of BTCUSDT (stored: 1m; choose with --interval)" in done.stderr
