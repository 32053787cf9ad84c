"""History, as a user runs it: whole processes over one 1,000,000-row kline CSV file.

Side by side in one run, each a fresh process timed from start to exit (best of a few):

- ``algotrade backtest --data FILE`` (the SMA 50/200 crossover, its default): start-up,
  reading every row with exact decimals, the backtest, the summary;
- the same with ``ALGOTRADE_SPEEDUPS=0`` (the pure-Python reader and bar-by-bar path);
- backtrader: ``GenericCSVData`` reading the same file, ``SMA`` + ``CrossOver`` in a
  ``Strategy`` (no orders), the crossovers counted;
- pandas: ``read_csv`` of the same file, nothing more (the floor of reading it).

algotrade's compiled and Python paths must print the same figures; backtrader's crossover
count is shown beside algotrade's signals (the same rule: a cross of the last non-zero sign).
The file is a random walk in cents in Binance's layout (8 decimals, a header row), written
once into a temporary directory.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = 1_000_000
HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
          "taker_buy_volume,taker_buy_quote_volume,ignore\n")  # fmt: skip

BACKTRADER = r"""
import sys
import backtrader as bt

class Cross(bt.Strategy):
    def __init__(self):
        fast = bt.indicators.SMA(self.data.close, period=50)
        slow = bt.indicators.SMA(self.data.close, period=200)
        self.cross = bt.indicators.CrossOver(fast, slow)
        self.count = 0

    def next(self):
        if self.cross[0]:
            self.count += 1

cerebro = bt.Cerebro(stdstats=False)
cerebro.adddata(bt.feeds.GenericCSVData(
    dataname=sys.argv[1], dtformat=lambda ms: __import__("datetime").datetime.utcfromtimestamp(
        int(ms) / 1000), datetime=0, open=1, high=2, low=3, close=4, volume=5,
    openinterest=-1, timeframe=bt.TimeFrame.Minutes, headers=True))
cerebro.addstrategy(Cross)
strategy = cerebro.run()[0]
print(strategy.count)
"""

PANDAS = r"""
import sys
import pandas as pd
frame = pd.read_csv(sys.argv[1])
print(len(frame))
"""


def write_file(path: Path, rows: int = ROWS, seed: int = 5) -> None:
    """Write ``rows`` one-minute klines of a random walk in cents."""
    rng = random.Random(seed)
    price = 42_000.0
    start = 1_704_067_200_000
    with path.open("w") as out:
        out.write(HEADER)
        for i in range(rows):
            opened = round(price, 2)
            price = max(1.0, price * (1 + rng.gauss(0, 0.001)))
            close = round(price, 2)
            high = max(opened, close) + round(rng.random() * 5, 2)
            low = min(opened, close) - round(rng.random() * 5, 2)
            t = start + i * 60_000
            out.write(f"{t},{opened:.8f},{high:.8f},{low:.8f},{close:.8f},1.23400000,"
                      f"{t + 59_999},51234.12,{rng.randint(1, 900)},0.5,2100.1,0\n")  # fmt: skip


def timed(command: list[str], env: dict[str, str], repeats: int) -> tuple[float, str]:
    """Return the best wall-clock seconds of ``command`` and its last output."""
    best, output = float("inf"), ""
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        best = min(best, time.perf_counter() - started)
        output = done.stdout
    return best, output


def run(
    rows: int = ROWS, repeats: int = 3, backtrader_repeats: int = 1
) -> tuple[dict[str, float], str]:
    """Measure the four processes; return the figures and the section of the page."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    algotrade = [sys.executable, "-m", "algotrade", "backtest"]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "BTCUSDT-1m-bench.csv"
        write_file(path, rows)
        size = path.stat().st_size
        as_json = [*algotrade, "--data", str(path), "--json"]
        _, fast_out = timed(as_json, env, 1)  # also writes the bytecode, as any install has it
        fast, _ = timed([*algotrade, "--data", str(path)], env, repeats)
        slow, slow_out = timed(as_json, {**env, "ALGOTRADE_SPEEDUPS": "0"}, 1)
        assert fast_out == slow_out, "the compiled and Python paths disagree"
        pandas, _ = timed([sys.executable, "-c", PANDAS, str(path)], env, repeats)
        theirs, crossings = timed([sys.executable, "-c", BACKTRADER, str(path)], env,
                                  backtrader_repeats)  # fmt: skip
    import json

    signals = json.loads(fast_out)["metrics"]["signals"]
    figures = {"algotrade": fast, "python": slow, "pandas": pandas, "backtrader": theirs}
    rate = {k: rows / v for k, v in figures.items()}
    import backtrader
    import pandas as pd

    lines = [
        f"## History: a whole `algotrade backtest` process over a {rows:,}-row kline CSV",
        "",
        "Command: `python bench/run_all.py --only=history` (also part of `nox -s bench`).",
        f"One {size / 1e6:,.0f} MB file in Binance's layout (one-minute klines, 8 decimals, a "
        "header), each tool a fresh process timed from start to exit, best of "
        f"{repeats} (backtrader: {backtrader_repeats}), bytecode compiled as any install has "
        "it. algotrade: `algotrade backtest --data FILE` (SMA 50/200, exact decimals, "
        "paper trades, equity, drawdown, Sharpe, the summary table); with "
        "`ALGOTRADE_SPEEDUPS=0` the pure-Python path (one run, `--json`, whose output is "
        f"compared with the compiled path's). backtrader {backtrader.__version__}: "
        "`GenericCSVData` of the file, `SMA` + `CrossOver`, no orders. pandas "
        f"{pd.__version__}: `read_csv` of the file and nothing else.",
        "",
        "| process | seconds | rows/s |",
        "|---|---:|---:|",
        f"| algotrade `backtest` (compiled) | {fast:.2f} | {rate['algotrade']:,.0f} |",
        f"| algotrade `backtest`, `ALGOTRADE_SPEEDUPS=0` | {slow:.2f} | {rate['python']:,.0f} |",
        f"| pandas `read_csv` alone | {pandas:.2f} | {rate['pandas']:,.0f} |",
        f"| backtrader SMA + CrossOver | {theirs:.2f} | {rate['backtrader']:,.0f} |",
        "",
        f"Ratios: **{theirs / fast:.1f}x** backtrader's whole process; "
        f"{pandas / fast:.2f}x pandas' `read_csv` alone (above 1: faster); "
        f"{slow / fast:.1f}x the pure-Python path. The two algotrade paths printed the same "
        f"JSON ({signals:,} signals); backtrader counted {int(crossings):,} crossovers. "
        "Goals: 1,000,000 rows/s or more as a whole process "
        f"({'met' if rate['algotrade'] >= 1e6 else 'not met'}), at least 20x backtrader "
        f"({'met' if theirs / fast >= 20 else 'not met'}).",
    ]
    return figures, "\n".join(lines)


if __name__ == "__main__":
    print(run()[1])
