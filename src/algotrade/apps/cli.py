"""The ``algotrade`` command line."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import orjson
import typer

from algotrade.apps.common import (
    DEFAULT_STORE,
    SourceSpec,
    open_store,
    parse_duration,
    parse_source,
    parse_speed,
    parse_symbols,
    tune_gc,
)
from algotrade.apps.runner import (
    FeedSettings,
    RunSettings,
    StrategySettings,
    TradingSettings,
    bootstrap_run,
    run_collector,
    run_pipeline,
    run_processor,
    run_trader,
)
from algotrade.apps.views import signal_view
from algotrade.domain.bars import Interval
from algotrade.domain.errors import AlgotradeError, ConfigurationError
from algotrade.domain.events import SignalEmitted
from algotrade.domain.strategy import SmaCrossover

app = typer.Typer(
    help="Collect market data, run an SMA crossover strategy, and act on its signals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

SourceOpt = Annotated[
    str,
    typer.Option(
        "--source",
        envvar="ALGOTRADE_SOURCE",
        help="Market data: synthetic, replay:PATH (a recorded raw file) or binance.",
    ),
]
SymbolOpt = Annotated[
    list[str],
    typer.Option(
        "--symbol",
        envvar="ALGOTRADE_SYMBOL",
        help="Symbol to collect; repeat it or separate with commas.",
    ),
]
IntervalOpt = Annotated[
    str, typer.Option("--interval", envvar="ALGOTRADE_INTERVAL", help="Bar length: 1s .. 1w.")
]
ShortOpt = Annotated[
    int, typer.Option("--short", envvar="ALGOTRADE_SHORT", help="Short SMA period, in bars.")
]
LongOpt = Annotated[
    int, typer.Option("--long", envvar="ALGOTRADE_LONG", help="Long SMA period, in bars.")
]
StoreOpt = Annotated[
    str,
    typer.Option(
        "--store", envvar="ALGOTRADE_STORE", help="Event store: a SQLite file path, or memory."
    ),
]
DurationOpt = Annotated[
    str | None,
    typer.Option(
        "--duration",
        envvar="ALGOTRADE_DURATION",
        help="Wall-clock run time: seconds, or with a unit (90s, 10m, 1h). Default: until the "
        "source ends or Ctrl-C.",
    ),
]
SpeedOpt = Annotated[
    str,
    typer.Option(
        "--speed",
        envvar="ALGOTRADE_SPEED",
        help="Pacing of market time: 1 is real time, 10 ten times faster, max unpaced.",
    ),
]
SeedOpt = Annotated[
    int, typer.Option("--seed", envvar="ALGOTRADE_SEED", help="Seed of the synthetic market.")
]
QuantityOpt = Annotated[
    str,
    typer.Option("--quantity", envvar="ALGOTRADE_QUANTITY", help="Base quantity a BUY opens."),
]
FeeOpt = Annotated[
    str,
    typer.Option("--fee", envvar="ALGOTRADE_FEE", help="Paper fee rate (0.001 is 0.1%)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def fail(message: str) -> NoReturn:
    """Print a one-line usage error and exit with status 2."""
    typer.echo(f"algotrade: error: {message}", err=True)
    raise typer.Exit(2)


def checked(build: Callable[[], T]) -> T:
    """Run a settings builder; turn configuration errors into exit status 2."""
    try:
        return build()
    except ConfigurationError as e:
        fail(f"--{e.name.replace('_', '-')}: {str(e).split(': ', 1)[1]}")


def _decimal(name: str, text: str, *, positive: bool = False) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigurationError(name, f"{text!r} is not a decimal number") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise ConfigurationError(name, f"must be {'positive' if positive else 'non-negative'}")
    return value


def _strategy(interval: str, short: int, long: int) -> StrategySettings:
    parsed = Interval.parse(interval)
    SmaCrossover(short, long)
    return StrategySettings(parsed, short, long)


def _feed(source: str, symbols: list[str], speed: str, seed: int) -> FeedSettings:
    spec: SourceSpec = parse_source(source)
    return FeedSettings(spec, parse_symbols(symbols), parse_speed(speed), seed)


def _duration(duration: str | None) -> float | None:
    return None if duration is None else parse_duration(duration)


def _trading(quantity: str, fee: str) -> TradingSettings:
    return TradingSettings(_decimal("quantity", quantity, positive=True), _decimal("fee", fee))


def execute(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; report algotrade errors in one line with exit status 1."""
    tune_gc()
    try:
        return anyio.run(main)
    except AlgotradeError as e:
        typer.echo(f"algotrade: {e}", err=True)
        raise typer.Exit(1) from None


def print_summary(title: str, figures: dict[str, Any], as_json: bool) -> None:
    """Print a run's figures as a two-column table or as JSON."""
    if as_json:
        typer.echo(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(title)
    for key, value in figures.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                typer.echo(f"  {key} {sub}:")
                for k, v in subvalue.items() if isinstance(subvalue, dict) else [(sub, subvalue)]:
                    typer.echo(f"    {k:<16} {v}")
            continue
        shown = f"{value:,}" if isinstance(value, int) else value
        typer.echo(f"  {key:<18} {shown}")


@app.command()
def run(
    source: SourceOpt = "synthetic",
    symbol: SymbolOpt = ["BTCUSDT"],  # noqa: B006 - typer reads the default, never mutates it
    interval: IntervalOpt = "1d",
    short: ShortOpt = 50,
    long: LongOpt = 200,
    store: StoreOpt = DEFAULT_STORE,
    duration: DurationOpt = None,
    speed: SpeedOpt = "max",
    seed: SeedOpt = 42,
    quantity: QuantityOpt = "0.01",
    fee: FeeOpt = "0.001",
    as_json: JsonOpt = False,
) -> None:
    """Run collector, processor and trader in one process on the embedded store."""
    settings = checked(
        lambda: RunSettings(
            feed=_feed(source, symbol, speed, seed),
            strategy=_strategy(interval, short, long),
            trading=_trading(quantity, fee),
            store=store,
            duration=_duration(duration),
        )
    )

    async def main() -> dict[str, Any]:
        pipeline = await bootstrap_run(settings)
        return await run_pipeline(pipeline, settings)

    print_summary("run summary", execute(main), as_json)


@app.command()
def collector(
    source: SourceOpt = "synthetic",
    symbol: SymbolOpt = ["BTCUSDT"],  # noqa: B006 - typer reads the default, never mutates it
    store: StoreOpt = DEFAULT_STORE,
    duration: DurationOpt = None,
    speed: SpeedOpt = "max",
    seed: SeedOpt = 42,
    as_json: JsonOpt = False,
) -> None:
    """Collect market data into the store; a replay ends (status 0) with its file."""
    feed = checked(lambda: _feed(source, symbol, speed, seed))
    seconds = checked(lambda: _duration(duration))
    print_summary(
        "collector summary", execute(lambda: run_collector(feed, store, seconds)), as_json
    )


@app.command()
def processor(
    interval: IntervalOpt = "1d",
    short: ShortOpt = 50,
    long: LongOpt = 200,
    store: StoreOpt = DEFAULT_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Follow stored market events, close bars and store SMA crossover signals."""
    strategy = checked(lambda: _strategy(interval, short, long))
    print_summary("processor summary", execute(lambda: run_processor(strategy, store)), as_json)


@app.command()
def trader(
    store: StoreOpt = DEFAULT_STORE,
    quantity: QuantityOpt = "0.01",
    fee: FeeOpt = "0.001",
    as_json: JsonOpt = False,
) -> None:
    """Follow stored signals and place one paper order for each."""
    trading = checked(lambda: _trading(quantity, fee))
    print_summary("trader summary", execute(lambda: run_trader(trading, store)), as_json)


@app.command()
def signals(store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False) -> None:
    """List the stored signals, oldest first."""

    async def main() -> list[dict[str, Any]]:
        db = open_store(store)
        try:
            out: list[dict[str, Any]] = []
            after = 0
            while batch := await db.read_all(after, limit=1000, types=(SignalEmitted,)):
                out.extend(
                    signal_view(s.event) for s in batch if isinstance(s.event, SignalEmitted)
                )
                after = batch[-1].position
            return out
        finally:
            await db.close()

    rows = execute(main)
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(
        f"{'bar_time':<25} {'symbol':<9} {'side':<4} {'price':>14}"
        f" {'short_sma':>14} {'long_sma':>14}  id"
    )
    for r in rows:
        typer.echo(
            f"{r['bar_time']:<25} {r['symbol']:<9} {r['side']:<4} {r['price']:>14}"
            f" {r['short_sma']:>14.4f} {r['long_sma']:>14.4f}  {r['id']}"
        )
    typer.echo(f"{len(rows)} signal(s)")


def main() -> None:
    """Entry point of the ``algotrade`` console script."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during shutdown
        sys.exit(130)
