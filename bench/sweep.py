"""Sweep speed: a grid of 100 SMA crossover parameter sets over 1,000,000 one-minute bars,
algotrade's exact, event-driven search against vectorbt's vectorised one.

- algotrade: :func:`algotrade.apps.optimize.run_search` over the bars of one kline CSV,
  every set a full backtest (signals through the live pipeline, paper trades with exact
  decimals, equity curve, drawdown, Sharpe), on every core;
- vectorbt (its own virtual environment, ``VECTORBT_PYTHON`` or ``/tmp/vbt/bin/python``;
  ``pip install vectorbt`` there): ``MA.run`` of both windows over the same closes,
  ``ma_crossed_above``/``ma_crossed_below``, ``Portfolio.from_signals`` (fees 0.1 %), its
  total return per set; timed after a warm-up run on 10,000 bars, so that numba's
  compilation is not counted (the first run, compilation included, is shown too).

The crossover bars of every set are compared: where they differ, the reason must be a tie
(the two averages equal within algotrade's margin at that bar or the one before), which
the two rules treat differently: algotrade compares with the last sign that was not a tie
(backtrader's rule), vectorbt with the bar before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

from bench.history import write_file

ROWS = 1_000_000
SHORTS = range(10, 101, 10)
LONGS = range(150, 1051, 100)

VECTORBT = r"""
import json, sys, time
import numpy as np, pandas as pd
import vectorbt as vbt

closes = np.fromfile(sys.argv[1], dtype=np.float64)
shorts, longs = json.loads(sys.argv[2]), json.loads(sys.argv[3])

def sweep(values):
    close = pd.Series(values)
    fast = vbt.MA.run(close, window=shorts, short_name="fast")
    slow = vbt.MA.run(close, window=longs, short_name="slow")
    entries = fast.ma_crossed_above(slow)
    exits = fast.ma_crossed_below(slow)
    portfolio = vbt.Portfolio.from_signals(close, entries, exits, fees=0.001, init_cash=10_000)
    return entries, exits, portfolio.total_return()

started = time.perf_counter()
sweep(closes[:10_000])
compile_seconds = time.perf_counter() - started
started = time.perf_counter()
entries, exits, returns = sweep(closes)
seconds = time.perf_counter() - started
crossings = []
for k in range(len(shorts)):
    up = np.flatnonzero(entries.iloc[:, k].to_numpy())
    down = np.flatnonzero(exits.iloc[:, k].to_numpy())
    crossings.append(sorted([(int(i), 1) for i in up] + [(int(i), -1) for i in down]))
json.dump({"seconds": seconds, "first": compile_seconds + seconds, "crossings": crossings,
           "version": vbt.__version__}, open(sys.argv[4], "w"))
"""


def run(rows: int = ROWS) -> tuple[dict[str, float], str]:
    """Measure both sweeps on the same bars; return the figures and the page's section."""
    from algotrade.adapters import speedups
    from algotrade.apps.backtesting import load_history
    from algotrade.apps.optimize import Constraint, Search, run_search
    from algotrade.domain.strategy import EQUAL_WITHIN

    python = os.environ.get("VECTORBT_PYTHON", "/tmp/vbt/bin/python")
    pairs = [(s, lo) for s in SHORTS for lo in LONGS]
    assert len(pairs) == 100
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "BTCUSDT-1m-sweep.csv"
        write_file(path, rows)
        history = load_history(path)
        closes = array("d", history.items.closes)  # type: ignore[union-attr]
        search = Search(
            "sma_crossover",
            (("short", tuple(map(str, SHORTS))), ("long", tuple(map(str, LONGS)))),
            Constraint.parse("short < long"),
            "total_return",
        )
        started = time.perf_counter()
        trials = run_search(search, history, jobs=os.cpu_count())
        ours = time.perf_counter() - started
        assert len(trials) == 100
        binary = Path(directory) / "closes.f64"
        closes.tofile(binary.open("wb"))
        answer = Path(directory) / "vectorbt.json"
        subprocess.run(
            [python, "-c", VECTORBT, str(binary), json.dumps([s for s, _ in pairs]),
             json.dumps([lo for _, lo in pairs]), str(answer)],
            check=True,
        )  # fmt: skip
        theirs = json.loads(answer.read_text())
    # their columns: MA.run's two lists of windows paired by position, one pair a column
    kernel = speedups.sma_crossover
    assert kernel is not None
    identical = 0
    differing_bars = 0
    explained = 0
    for k, (short, long) in enumerate(pairs):
        found = kernel(closes, short, long, EQUAL_WITHIN)
        mine = {(i, side) for i, side, _, _ in found}
        other = {(i, side) for i, side in theirs["crossings"][k]}
        if mine == other:
            identical += 1
            continue
        apart = mine ^ other
        differing_bars += len(apart)
        explained += sum(1 for i, _ in apart if _tie_near(closes, short, long, i))
    evaluations = 100 * rows
    lines = [
        f"## Sweep: 100 SMA crossover sets over {rows:,} one-minute bars, against vectorbt",
        "",
        "Command: `python bench/run_all.py --only=sweep` (vectorbt in its own virtual "
        "environment: `python -m venv /tmp/vbt && /tmp/vbt/bin/pip install vectorbt`, or "
        "`VECTORBT_PYTHON`). The grid: short 10..100:10 and long 150..1050:100, all 100 "
        f"pairs, over the closes of one {rows:,}-row kline CSV. algotrade: `run_search` "
        f"(what `algotrade optimize` runs) on {os.cpu_count()} processes, every set a full "
        "backtest (signals through the live pipeline, paper trades with exact decimals, "
        "equity, drawdown, Sharpe). vectorbt "
        f"{theirs['version']}: `MA.run` of both windows, `ma_crossed_above`/`below`, "
        "`Portfolio.from_signals` (fees 0.1 %), timed after a warm-up run on 10,000 bars "
        "(numba compiled), one process.",
        "",
        "| sweep | seconds | bar-evaluations/s |",
        "|---|---:|---:|",
        f"| algotrade `optimize` (exact, event-driven) | {ours:.2f} | {evaluations / ours:,.0f} |",
        f"| vectorbt (vectorised, compiled) | {theirs['seconds']:.2f} | "
        f"{evaluations / theirs['seconds']:,.0f} |",
        f"| vectorbt, its first run (numba compiling) | {theirs['first']:.2f} | "
        f"{evaluations / theirs['first']:,.0f} |",
        "",
        f"Ratio: vectorbt's bar-evaluations/s are **{ours / theirs['seconds']:.2f}x** "
        f"algotrade's (aim: within 4x: {'met' if ours / theirs['seconds'] <= 4 else 'not met'}"
        f"); per core (algotrade on {os.cpu_count()} processes, vectorbt on one), "
        f"{ours * (os.cpu_count() or 1) / theirs['seconds']:.2f}x. "
        f"Crossover bars: {identical} of 100 sets identical; the other sets differ on "
        f"{differing_bars} bars, {explained} of them next to a tie of the two averages "
        "(equal within algotrade's margin at that bar or the one before), where the rules "
        "differ by design.",
    ]
    return {"ours": ours, "theirs": theirs["seconds"]}, "\n".join(lines)


def _tie_near(closes: array[float], short: int, long: int, index: int) -> bool:
    """Return whether the averages are equal within ten times algotrade's margin at
    ``index`` or the bar before."""
    from algotrade.domain.strategy import EQUAL_WITHIN

    for at in (index - 1, index):
        if at + 1 < long:
            continue
        fast = sum(closes[at + 1 - short : at + 1]) / short
        slow = sum(closes[at + 1 - long : at + 1]) / long
        if abs(fast - slow) <= abs(slow) * EQUAL_WITHIN * 10:
            return True
    return False


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(run()[1])
