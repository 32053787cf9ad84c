"""Walk-forward validation: rolling windows whose out-of-sample stretches tile the end of
the history, each stretch traded with its in-sample winner (the strategy warmed up on the
in-sample bars), the equity carried from stretch to stretch."""

from __future__ import annotations

import csv
import itertools
import json
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest
from typer.testing import CliRunner, Result

from algotrade.apps.backtesting import backtest, synthetic_history
from algotrade.apps.cli import app
from algotrade.apps.logs import configure_logging
from algotrade.apps.optimize import Constraint, Search, run_search
from algotrade.apps.strategies import resolve
from algotrade.apps.walkforward import walk_forward, windows_of
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed
from algotrade.domain.strategy import SmaCrossover

SEARCH = Search(
    "sma_crossover",
    (("short", ("5", "10", "20")), ("long", ("30", "60"))),
    Constraint.parse("short < long"),
    "total_return",
)


def invoke(args: list[str]) -> Result:
    """Run the CLI in-process; restore logging to stderr after."""
    try:
        return CliRunner().invoke(app, args)
    finally:
        configure_logging(sys.stderr)  # a command logs into the runner's stream, closed after


def test_windows_roll_and_their_out_of_sample_stretches_tile_the_end() -> None:
    """n windows: each in-sample range is 3 times its stretch at 75 %, each stretch follows
    its in-sample range, and the stretches follow each other to the last bar."""
    spans = windows_of(1000, 4, 0.75)
    assert len(spans) == 4
    outs = [out for _, out in spans]
    assert outs[0].start == spans[0][0].stop
    for before, after in itertools.pairwise(outs):
        assert before.stop == after.start
    assert outs[-1].stop == 1000
    for inside, out in spans:
        assert inside.stop == out.start
        assert len(inside) == 1000 - 4 * 142  # 3 x 142, and the bars the division left
    assert [len(out) for out in outs] == [142, 142, 142, 142]
    for n, share, says in [(0, 0.75, "at least one window"), (3, 1.0, "share in"),
                           (120, 0.9, "too few")]:  # fmt: skip
        with pytest.raises(ConfigurationError, match=says):
            windows_of(100, n, share)


def test_each_stretch_is_its_in_sample_winner_backtested_after_a_warm_up() -> None:
    """Every window's parameters are the best of the same search run on its in-sample bars
    alone; its out-of-sample figures are that strategy's backtest of the stretch after the
    in-sample bars warmed it up, starting with the equity the previous stretch ended with."""
    history = synthetic_history(2400, seed=11)
    walked = walk_forward(SEARCH, history, 3, jobs=1)
    bars = cast("list[BarClosed]", list(history.items))
    cash = Decimal(10_000)
    for window, (inside, out) in zip(walked.windows, windows_of(len(bars), 3, 0.75), strict=True):
        sample = replace(history, items=bars[inside.start : inside.stop])
        best = run_search(SEARCH, sample, jobs=1, initial_cash=cash)[0]
        assert window.params == best.params
        assert window.in_sample_metrics == best.metrics
        strategy = resolve("sma_crossover", [(k, str(v)) for k, v in best.params]).build()
        tested = backtest(
            strategy, replace(history, items=bars[out.start : out.stop]),
            warmup=bars[inside.start : inside.stop], initial_cash=cash,
        )  # fmt: skip
        assert window.out_of_sample_metrics == tested.metrics()
        assert window.curve == tuple(tested.equity_curve)
        cash = Decimal(str(round(tested.final_equity, 8)))
    summary = walked.summary()
    assert summary["final_equity"] == float(cash)
    assert summary["total_return"] == round(float(cash) / 10_000 - 1, 8)
    assert summary["bars"] == len(walked.curve) == len(bars) - len(windows_of(2400, 3, 0.75)[0][0])


def test_a_warmed_up_stretch_signals_as_the_whole_history_does() -> None:
    """Warmed up on the bars before it, a strategy signals on a stretch exactly what it
    signals there when run over the whole history: the warm-up fills its indicators and
    trades nothing."""
    history = synthetic_history(1200, seed=3)
    bars = cast("list[BarClosed]", list(history.items))
    whole = backtest(SmaCrossover(5, 30), history)
    part = backtest(SmaCrossover(5, 30), replace(history, items=bars[800:]), warmup=bars[:800])
    later = [s for s in whole.signals if s.bar_time >= bars[800].open_time]
    assert [(s.signal_id, s.side) for s in part.signals] == [(s.signal_id, s.side) for s in later]
    assert part.bars == 400
    cold = backtest(SmaCrossover(5, 30), replace(history, items=bars[800:]))
    assert cold.signals[0].bar_time >= bars[829].open_time  # without it: 30 bars to fill


def test_walk_forward_from_the_command_line(tmp_path: Path) -> None:
    """--walk-forward 3 prints a line per window and the joined out-of-sample figures;
    --json carries the windows, the summary and the curve; --csv a row per window."""
    args = ["optimize", "--synthetic", "--bars", "2400", "--seed", "11", "--param",
            "short=5,10,20", "--param", "long=30,60", "--constraint", "short < long",
            "--objective", "total_return", "--walk-forward", "3", "--jobs", "1"]  # fmt: skip
    table = invoke(args)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].startswith("walk-forward of sma_crossover on synthetic:11: 3 windows")
    assert [line.split()[0] for line in lines[2:5]] == ["1", "2", "3"]
    assert lines[5].startswith("out of sample, joined: return ")
    found = invoke([*args, "--json", "--csv", str(tmp_path / "windows.csv")])
    body = json.loads(found.stdout)
    expected = walk_forward(SEARCH, synthetic_history(2400, seed=11), 3, jobs=1)
    assert body["out_of_sample"] == expected.summary()
    assert [w["params"] for w in body["windows"]] == [
        ", ".join(f"{k}={v}" for k, v in w.params) for w in expected.windows
    ]
    assert len(body["curve"]) == len(expected.curve)
    with (tmp_path / "windows.csv").open() as rows:
        assert [row["window"] for row in csv.DictReader(rows)] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--walk-forward", "0"], "--walk-forward: needs a window or more"),
        (["--walk-forward", "3", "--in-sample", "1.5"], "--in-sample: must be a share"),
    ],
)
def test_a_bad_walk_forward_exits_2_before_any_data_is_read(
    extra: list[str], says: str, tmp_path: Path
) -> None:
    """A window count or share out of range exits 2 naming the option."""
    done = invoke(["optimize", "--data", str(tmp_path / "absent.csv"), "--param", "short=5",
                   *extra])  # fmt: skip
    assert done.exit_code == 2, done.output
    assert says in done.stderr


def test_market_events_are_refused_for_a_walk_forward() -> None:
    """A recording's market events are no bars to cut in windows: a clear error."""
    from algotrade.services.backtesting import History

    events = History("events", "BTCUSDT", synthetic_history(1).interval, [], "rec.jsonl")
    with pytest.raises(ConfigurationError, match="needs bars"):
        walk_forward(SEARCH, events, 2)


def test_the_documented_walk_forward_prints_what_the_docs_show() -> None:
    """docs/strategies.md's walk-forward example prints, run, exactly the lines under it."""
    import shlex

    from tests.conftest import ROOT

    page = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
    examples = page.split("$ algotrade optimize")[1:]
    block = next(e for e in examples if "--walk-forward" in e.splitlines()[0])
    lines = block.split("```", 1)[0].splitlines()
    done = invoke(["optimize", *shlex.split(lines[0]), "--jobs", "1"])
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == lines[1:]
