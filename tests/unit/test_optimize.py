"""`algotrade optimize`: parameter ranges and constraints read as written, every set a full
backtest ranked by the objective (the same in parallel), and the best one printed as the
command that backtests it to the same figures."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from algotrade.apps.backtesting import backtest, synthetic_history
from algotrade.apps.cli import app
from algotrade.apps.logs import configure_logging
from algotrade.apps.optimize import Constraint, Search, run_search, values_of
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.strategy import SmaCrossover


def test_ranges_lists_and_single_values() -> None:
    """a..b:step includes both ends; a,b,c is a list; one value is itself."""
    assert values_of("short", "5..20:5") == ["5", "10", "15", "20"]
    assert values_of("short", "3..5") == ["3", "4", "5"]
    assert values_of("width", "1.5..2.5:0.5") == ["1.5", "2", "2.5"]  # 2: 2.0 for a float
    assert values_of("mode", "fast,slow") == ["fast", "slow"]
    assert values_of("short", "7") == ["7"]
    for bad in ("5..1", "1..5:0"):
        with pytest.raises(ConfigurationError, match="start <= stop and a positive step"):
            values_of("short", bad)
    with pytest.raises(ConfigurationError, match=r"is not a range a\.\.b:step"):
        values_of("short", "1..5:-1")


def test_constraints_compare_parameters_and_numbers() -> None:
    """'short < long and long <= 100' holds or not; a part that is no comparison is refused."""
    rule = Constraint.parse("short < long and long <= 100")
    assert rule.names() == {"short", "long"}
    assert rule.holds({"short": 5, "long": 50})
    assert not rule.holds({"short": 50, "long": 50})
    assert not rule.holds({"short": 5, "long": 150})
    assert Constraint.parse(None).holds({})
    with pytest.raises(ConfigurationError, match="is not a comparison like short < long"):
        Constraint.parse("short + 1 < long")
    with pytest.raises(ConfigurationError, match="names period, which no --param gives"):
        Search("sma_crossover", (("short", ("5",)),), Constraint.parse("period < 3"), "sharpe")


def test_the_search_ranks_every_allowed_set_by_the_objective() -> None:
    """Every set the constraint allows is backtested once; the ranking is by the objective
    (max drawdown: lowest first), the same with two processes as with one."""
    history = synthetic_history(1500, seed=7)
    ranges = (("short", ("5", "10", "30")), ("long", ("20", "40")))
    search = Search("sma_crossover", ranges, Constraint.parse("short < long"), "max_drawdown")
    one = run_search(search, history, jobs=1)
    two = run_search(search, history, jobs=2)
    assert [t.params for t in one] == [t.params for t in two]
    assert sorted(dict(t.params)["short"] for t in one) == [5, 5, 10, 10, 30]
    drawdowns = [t.metrics["max_drawdown"] for t in one]
    assert drawdowns == sorted(drawdowns)
    expected = {(s, lg): backtest(SmaCrossover(s, lg), history).metrics()["max_drawdown"]
                for s, lg in ((5, 20), (5, 40), (10, 20), (10, 40), (30, 40))}  # fmt: skip
    assert {(dict(t.params)["short"], dict(t.params)["long"]): t.metrics["max_drawdown"]
            for t in one} == expected  # fmt: skip


def test_a_random_search_is_a_seeded_sample() -> None:
    """A random search tries --trials sets, the same ones for the same seed."""
    ranges = (("short", tuple(str(v) for v in range(2, 30))), ("long", ("40", "60")))
    search = Search("sma_crossover", ranges, Constraint.parse(None), "sharpe", "random", 7)
    first = [s.params for s in search.candidates()]
    assert len(first) == 7
    assert first == [s.params for s in search.candidates()]


def test_the_best_command_backtests_to_the_same_figures(tmp_path: Path) -> None:
    """The command printed as best gives, run, the objective value of the best row."""
    args = ["optimize", "--synthetic", "--bars", "2000", "--param", "short=5..25:10",
            "--param", "long=30,60", "--constraint", "short < long", "--objective",
            "total_return", "--json", "--jobs", "1"]  # fmt: skip
    args += ["--csv", str(tmp_path / "all.csv")]
    try:
        found = CliRunner().invoke(app, args)
        assert found.exit_code == 0, found.output
        body = json.loads(found.stdout)
        rerun = CliRunner().invoke(app, [*shlex.split(body["command"])[1:], "--json"])
    finally:
        configure_logging(sys.stderr)  # a command logs into the runner's stream, closed after
    assert len(body["trials"]) == 6
    returns = [row["total_return"] for row in body["trials"]]
    assert returns == sorted(returns, reverse=True)
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["metrics"]["total_return"] == body["best"]["total_return"]
    assert len((tmp_path / "all.csv").read_text().splitlines()) == 7


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--objective", "luck"], "--objective: 'luck' is none of sharpe"),
        (["--param", "short=9..1"], "a range needs start <= stop"),
        (["--param", "short=5", "--param", "long=4", "--constraint", "short < long"],
         "excludes every parameter set searched"),
        (["--strategy", "nope"], "unknown strategy 'nope'"),
    ],
)  # fmt: skip
def test_a_bad_search_exits_2_before_any_data_is_read(
    extra: list[str], says: str, tmp_path: Path
) -> None:
    """A bad objective, range, constraint or strategy exits 2 naming it, before the data
    (absent here) is opened."""
    args = ["optimize", "--data", str(tmp_path / "absent.csv"), *extra]
    try:
        done = CliRunner().invoke(app, args)
    finally:
        configure_logging(sys.stderr)
    assert done.exit_code == 2, done.output
    assert says in done.stderr


def test_the_documented_optimisation_prints_what_the_docs_show() -> None:
    """docs/strategies.md's optimize example prints, run, exactly the lines shown under it."""
    from tests.conftest import ROOT

    page = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
    block = page.split("$ algotrade optimize", 1)[1].split("```", 1)[0].splitlines()
    args = ["optimize", *shlex.split(block[0]), "--jobs", "1"]
    try:
        done = CliRunner().invoke(app, args)
    finally:
        configure_logging(sys.stderr)
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == block[1:]


BAYES_RANGES = (
    ("short", tuple(str(v) for v in range(5, 61, 5))),
    ("long", tuple(str(v) for v in range(20, 301, 10))),
)


def test_a_bayes_search_is_seeded_and_learns_from_its_results() -> None:
    """Optuna's TPE sampler, seeded: the same 40 sets twice, each the backtest of its set,
    the constraint held; its best beats a random search's of the same budget and is in the
    grid's top ten."""
    history = synthetic_history(3000, seed=42)
    rule = Constraint.parse("short < long")
    bayes = Search("sma_crossover", BAYES_RANGES, rule, "sharpe", "bayes", 40, seed=42)
    first = run_search(bayes, history, jobs=2)
    again = run_search(bayes, history, jobs=1)
    assert [t.params for t in first] == [t.params for t in again]
    assert len(first) == 40
    assert len({t.params for t in first}) == 40
    for trial in first[:3]:
        values = dict(trial.params)
        assert values["short"] < values["long"]
        result = backtest(SmaCrossover(values["short"], values["long"]), history)
        assert result.metrics() == trial.metrics
    grid = run_search(Search("sma_crossover", BAYES_RANGES, rule, "sharpe"), history, jobs=2)
    chance = Search("sma_crossover", BAYES_RANGES, rule, "sharpe", "random", 40, seed=42)
    sampled = run_search(chance, history, jobs=2)
    best = first[0].metrics["sharpe"]
    assert best >= sampled[0].metrics["sharpe"]
    assert best >= grid[9].metrics["sharpe"]


def test_a_bayes_search_of_a_small_grid_tries_each_set_once() -> None:
    """Asked for more sets than there are, it backtests each allowed set once and stops."""
    history = synthetic_history(800, seed=3)
    ranges = (("short", ("5", "10")), ("long", ("20", "40", "5")))
    search = Search("sma_crossover", ranges, Constraint.parse("short < long"), "total_return",
                    "bayes", 50, seed=1)  # fmt: skip
    found = run_search(search, history, jobs=1)
    assert sorted(t.params for t in found) == sorted(
        (("short", s), ("long", lo)) for s in (5, 10) for lo in (20, 40)
    )


def test_a_bayes_search_without_optuna_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without the optimize extra: exit 2 naming the install, before any data is read."""
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    try:
        done = CliRunner().invoke(app, ["optimize", "--data", str(tmp_path / "absent.csv"),
                                        "--param", "short=5,10", "--search", "bayes"])  # fmt: skip
    finally:
        configure_logging(sys.stderr)
    assert done.exit_code == 2, done.output
    assert "pip install 'algotrade[optimize]'" in done.stderr
