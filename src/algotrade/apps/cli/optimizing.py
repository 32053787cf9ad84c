"""The ``optimize`` command: a parameter search, or its walk-forward validation."""

from __future__ import annotations

import csv
import itertools
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from algotrade.apps.cli.app import app
from algotrade.apps.cli.exits import checked
from algotrade.apps.cli.options import FeeOpt, JsonOpt, StrategyOpt, option_decimal
from algotrade.apps.cli.research import (
    BacktestIntervalOpt,
    BacktestSymbolOpt,
    BarsOpt,
    BuyQuantityOpt,
    CashOpt,
    DataOpt,
    SyntheticOpt,
    command_history,
)
from algotrade.apps.logs import configure_logging
from algotrade.apps.strategies import DEFAULT as DEFAULT_STRATEGY
from algotrade.domain.errors import ConfigurationError
from algotrade.services.views import iso

if TYPE_CHECKING:
    from algotrade.apps.walkforward import WalkForward


@app.command()
def optimize(
    data: DataOpt = None,
    synthetic: SyntheticOpt = False,
    bars: BarsOpt = 5000,
    symbol: BacktestSymbolOpt = None,
    interval: BacktestIntervalOpt = None,
    strategy: StrategyOpt = DEFAULT_STRATEGY,
    param: Annotated[
        list[str],
        typer.Option(
            "--param",
            help="A searched parameter: name=a..b:step (both ends included), name=a,b,c, or "
            "name=value (fixed). Repeat it.",
        ),
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    constraint: Annotated[
        str | None,
        typer.Option("--constraint", help="Comparisons the sets must satisfy: 'short < long'."),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            help="sharpe, total_return, final_equity, win_rate, "
            "round_trips (maximised) or max_drawdown (minimised).",
        ),
    ] = "sharpe",
    search: Annotated[
        str,
        typer.Option(
            "--search",
            help="grid (every set), random (--trials of them, a seeded sample) or bayes "
            "(--trials of them chosen by Optuna's TPE sampler from the results so far; "
            "pip install 'algotrade[optimize]').",
        ),
    ] = "grid",
    trials: Annotated[
        int, typer.Option("--trials", help="Sets a random or bayes search tries.")
    ] = 100,
    walk_forward: Annotated[
        int | None,
        typer.Option(
            "--walk-forward",
            help="Validate instead: N rolling windows, each searched in-sample and its winner "
            "backtested on the stretch that follows.",
        ),
    ] = None,
    in_sample: Annotated[
        float,
        typer.Option("--in-sample", help="Walk-forward: the in-sample share of a window."),
    ] = 0.75,
    jobs: Annotated[
        int | None, typer.Option("--jobs", help="Processes at once (default: every core).")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Rows of the table.")] = 10,
    csv_out: Annotated[
        Path | None,
        typer.Option("--csv", help="Also write every trial (walk-forward: window) to this CSV."),
    ] = None,
    fee: FeeOpt = "0.001",
    initial_cash: CashOpt = "10000",
    quantity: BuyQuantityOpt = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            envvar="ALGOTRADE_SEED",
            help="Seed of the synthetic market and of a random or bayes search.",
        ),
    ] = 42,
    as_json: JsonOpt = False,
) -> None:
    """Search a strategy's parameters on history: every set a full backtest, on every core;
    the best printed as the command that backtests it. --walk-forward N validates the
    search out of sample."""
    from algotrade.adapters.memory import SystemClock
    from algotrade.apps.common import Progress, rate
    from algotrade.apps.optimize import Constraint, Search, run_search, values_of
    from algotrade.apps.strategies import split_params

    configure_logging(sys.stderr, level="warning")

    def planned() -> Search:
        ranges = tuple((k, tuple(values_of(k, v))) for k, v in split_params(param))
        found = Search(strategy, ranges, Constraint.parse(constraint), objective, search,
                       trials, seed)  # fmt: skip
        if search == "bayes":
            from algotrade.apps.optimize import require_optuna

            require_optuna()  # installed, or exit 2 before the data is read
        if next(found.candidates(), None) is None:  # the strategy and every type checked
            raise ConfigurationError("constraint", "excludes every parameter set searched")
        if walk_forward is not None and walk_forward < 1:
            raise ConfigurationError("walk_forward", f"needs a window or more, got {walk_forward}")
        if not 0 < in_sample < 1:
            raise ConfigurationError("in_sample", f"must be a share in (0, 1), got {in_sample}")
        return found

    plan = checked(planned)
    cash = checked(lambda: option_decimal("initial_cash", initial_cash, positive=True))
    fixed = None
    if quantity is not None:
        fixed = checked(lambda: option_decimal("quantity", quantity, positive=True))
    fee_rate = checked(lambda: option_decimal("fee", fee))
    options = {"fee": fee_rate, "initial_cash": cash, "quantity": fixed}
    if data is not None and not synthetic:  # a recording or a store too: read once, in memory
        from algotrade.apps.backtesting import load_history

        history = checked(lambda: load_history(data, symbol=symbol, interval=interval))
    else:  # --synthetic, or the error naming both options
        history = checked(lambda: command_history(data, synthetic, bars, symbol, interval, seed))
    done = [0, 0]
    meter = Progress(
        lambda e: f"[optimize] {done[0]:,}/{done[1]:,} sets {rate(done[0], e)}", SystemClock()
    )  # the clock of an entry point

    shown_at = [float("-inf")]

    def progress(finished: int, total: int) -> None:
        done[:] = [finished, total]
        now = meter.clock.monotonic()
        if finished == total or now - shown_at[0] >= meter.period:  # one line a period
            shown_at[0] = now
            meter.show()

    source = ["--synthetic", "--bars", str(bars), "--seed", str(seed)] if synthetic else [
        "--data", data or ""]  # fmt: skip
    if symbol:
        source += ["--symbol", symbol]
    if interval:
        source += ["--interval", interval]

    if walk_forward is not None:
        from algotrade.apps.walkforward import walk_forward as validate

        walked = checked(lambda: validate(
            plan, history, walk_forward, in_sample=in_sample, jobs=jobs, on_progress=progress,
            fee=fee_rate, initial_cash=cash, quantity=fixed,
        ))  # fmt: skip
        meter.finish()
        _show_walk_forward(walked, strategy, history.source, csv_out, as_json,
                           [name for name, _ in plan.ranges])  # fmt: skip
        return

    results = checked(lambda: run_search(plan, history, jobs=jobs, on_progress=progress, **options))
    meter.finish()
    shown = dict.fromkeys((objective, "total_return", "max_drawdown", "sharpe", "round_trips"))
    rows = [{**dict(t.params), **{k: t.metrics[k] for k in shown}} for t in results]
    if csv_out is not None:
        _write_csv(csv_out, rows)
    best = results[0]
    command = ["algotrade", "backtest", *source, "--strategy", strategy,
               *itertools.chain.from_iterable(("--param", f"{k}={v}") for k, v in best.params),
               "--fee", fee, "--initial-cash", initial_cash]  # fmt: skip
    if quantity is not None:
        command += ["--quantity", quantity]
    if as_json:
        body = {"kind": "search", "strategy": strategy, "source": history.source,
                "objective": objective, "parameters": [name for name, _ in plan.ranges],
                "trials": rows, "best": rows[0], "command": shlex.join(command)}  # fmt: skip
        typer.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    names = list(rows[0])
    typer.echo(f"optimize {strategy} on {history.source}: {len(rows)} sets by {objective}")
    typer.echo("  ".join(f"{n:>14}" for n in names))
    for row in rows[:top]:
        typer.echo("  ".join(f"{'-' if row[n] is None else row[n]!s:>14}" for n in names))
    typer.echo(f"best: {shlex.join(command)}")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _when(ns: int, interval_ns: int) -> str:
    """Return a bar's open time: its date for daily bars and longer, else to the minute."""
    text = iso(ns)
    return text[:10] if interval_ns >= 86_400 * 10**9 else text[:16].replace("T", " ")


def window_rows(walked: WalkForward) -> list[dict[str, Any]]:
    """Return one row per walk-forward window: its spans, winner and both objectives."""
    key = walked.objective
    return [
        {
            "window": w.index,
            "in_sample_from": iso(w.in_sample[0]),
            "in_sample_to": iso(w.in_sample[1]),
            "out_of_sample_from": iso(w.out_of_sample[0]),
            "out_of_sample_to": iso(w.out_of_sample[1]),
            "params": ", ".join(f"{k}={v}" for k, v in w.params),
            f"in_sample_{key}": w.in_sample_metrics.get(key),
            f"out_of_sample_{key}": w.out_of_sample_metrics.get(key),
            "out_of_sample_return": w.out_of_sample_metrics["total_return"],
            "out_of_sample_round_trips": w.out_of_sample_metrics["round_trips"],
        }
        for w in walked.windows
    ]


def _show_walk_forward(
    walked: WalkForward,
    strategy: str,
    source: str,
    csv_out: Path | None,
    as_json: bool,
    names: list[str],
) -> None:
    rows = window_rows(walked)
    summary = walked.summary()
    if csv_out is not None:
        _write_csv(csv_out, rows)
    if as_json:
        key = walked.objective
        searched = [[{**dict(t.params), key: t.metrics.get(key)} for t in w.trials]
                    for w in walked.windows]  # fmt: skip
        body = {"kind": "walk_forward", "strategy": strategy, "source": source,
                "objective": key, "parameters": names, "in_sample": walked.in_sample,
                "windows": [{**row, "chosen": dict(w.params), "in_sample_trials": trials}
                            for row, w, trials in zip(rows, walked.windows, searched,
                                                      strict=True)],
                "out_of_sample": summary,
                "curve": [[t, round(v, 8)] for t, v in walked.curve]}  # fmt: skip
        typer.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    key = walked.objective
    typer.echo(f"walk-forward of {strategy} on {source}: {len(rows)} windows, "
               f"{walked.in_sample:.0%} in sample, by {key}")  # fmt: skip

    def figure(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    width = len(_when(0, walked.interval_ns)) * 2 + 4
    typer.echo(f"{'#':>2}  {'in sample':<{width}}  {'out of sample':<{width}}  {'params':<24}  "
               f"{'in ' + key:>12}  {'out ' + key:>12}  {'out return':>10}")  # fmt: skip
    step = walked.interval_ns
    for w, row in zip(walked.windows, rows, strict=True):
        typer.echo(
            f"{w.index:>2}  {_when(w.in_sample[0], step)} .. {_when(w.in_sample[1], step)}  "
            f"{_when(w.out_of_sample[0], step)} .. {_when(w.out_of_sample[1], step)}  "
            f"{row['params']:<24}  "
            f"{figure(row[f'in_sample_{key}']):>12}  {figure(row[f'out_of_sample_{key}']):>12}  "
            f"{row['out_of_sample_return']:>10.2%}"
        )
    typer.echo(
        f"out of sample, joined: return {summary['total_return']:.2%}, max drawdown "
        f"{summary['max_drawdown']:.2%}, sharpe {figure(summary['sharpe'])}, "
        f"{summary['round_trips']} round trips; mean {key}: in sample "
        f"{figure(summary[f'in_sample_mean_{key}'])}, out of sample "
        f"{figure(summary[f'out_of_sample_mean_{key}'])}"
    )
