"""The research commands: ``backtest``, ``parity``, ``report`` and ``strategies``."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from algotrade.apps.cli.app import app
from algotrade.apps.cli.exits import checked, execute, option_error, print_summary
from algotrade.apps.cli.listings import read_stored
from algotrade.apps.cli.options import (
    FeeOpt,
    IntervalOpt,
    JsonOpt,
    LongOpt,
    ParamOpt,
    SeedOpt,
    ShortOpt,
    StrategyOpt,
    option_decimal,
    strategy_spec,
)
from algotrade.apps.common import parse_symbols
from algotrade.apps.logs import configure_logging
from algotrade.apps.strategies import DEFAULT as DEFAULT_STRATEGY
from algotrade.apps.strategies import StrategySpec
from algotrade.domain.bars import Interval
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import (
    BarClosed,
    OrderFilled,
    SignalEmitted,
)
from algotrade.services.views import (
    iso,
    signal_view,
    trade_view,
)

DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="History: a kline CSV file (Binance's layout), SYMBOL:INTERVAL (the archives "
        "algotrade download kept), a recorded raw session (algotrade record), or an event "
        "store URL (mongodb://..., sqlite:///file.db).",
    ),
]
SyntheticOpt = Annotated[
    bool, typer.Option("--synthetic", help="A seeded synthetic market instead of --data.")
]
BarsOpt = Annotated[int, typer.Option("--bars", help="Bars of the synthetic market.")]
BacktestIntervalOpt = Annotated[
    str | None,
    typer.Option(
        "--interval",
        help="Bar length (1s .. 1w). Candles: their own by default, a multiple resamples them; "
        "recordings and stores: 1m by default; synthetic: 1d.",
    ),
]
BacktestSymbolOpt = Annotated[
    str | None,
    typer.Option("--symbol", help="The symbol to test (default: the data's first)."),
]
CashOpt = Annotated[str, typer.Option("--initial-cash", help="Quote currency at the start.")]
BuyQuantityOpt = Annotated[
    str | None,
    typer.Option("--quantity", help="Fixed base quantity per BUY (default: all the cash)."),
]
PriceSourceOpt = Annotated[
    str, typer.Option("--price-source", help="Bars of market data from mid or trade prices.")
]


def command_history(
    data: str | None,
    synthetic: bool,
    bars: int,
    symbol: str | None,
    interval: str | None,
    seed: int,
) -> Any:
    from algotrade.apps.backtesting import load_history, market_events, synthetic_history

    if (data is None) == (not synthetic):
        raise ConfigurationError("data", "give either --data PATH or --synthetic")
    if synthetic:
        if bars < 1:
            raise ConfigurationError("bars", f"must be positive, got {bars}")
        return synthetic_history(bars, interval=interval or "1d", symbol=symbol or "BTCUSDT",
                                 seed=seed)  # fmt: skip
    assert data is not None
    wanted = Interval.parse(interval) if interval else None
    events = market_events(data, symbol=symbol, interval=wanted)  # read as the backtest runs
    return events if events is not None else load_history(data, symbol=symbol, interval=interval)


def _report_rejects(history: Any) -> None:
    for reject in history.rejected[:20]:
        typer.echo(f"algotrade: skipped {reject.where} of {reject.source}: {reject.reason}",
                   err=True)  # fmt: skip
    if len(history.rejected) > 20:
        typer.echo(f"algotrade: ... {len(history.rejected) - 20} more rows skipped", err=True)
    if history.other_symbols:
        others = ", ".join(sorted(history.other_symbols))
        typer.echo(f"algotrade: testing {history.symbol}; also in the data: {others} "
                   "(choose with --symbol)", err=True)  # fmt: skip


def _price_source(text: str) -> Any:
    if text not in ("mid", "trade"):
        raise ConfigurationError("price_source", f"{text!r} is not mid or trade")
    return text


def _run_backtest(history: Any, spec: StrategySpec, fee: str, cash: str,
                  quantity: str | None, price_source: str, progress: bool) -> Any:  # fmt: skip
    from algotrade.adapters.memory import SystemClock
    from algotrade.apps.backtesting import MarketEvents, backtest
    from algotrade.apps.common import Progress, rate

    strategy = spec.build()
    fee_rate = option_decimal("fee", fee)
    initial = option_decimal("initial_cash", cash, positive=True)
    fixed = None if quantity is None else option_decimal("quantity", quantity, positive=True)
    source = _price_source(price_source)
    streamed = isinstance(history, MarketEvents)  # read as the run goes
    total = 0 if streamed else len(history.items)
    if not progress or (not streamed and total < 200_000):
        return backtest(strategy, history, fee=fee_rate, initial_cash=initial, quantity=fixed,
                        price_source=source)  # fmt: skip
    done = [0]
    noun = "events" if streamed or history.kind == "events" else "bars"

    def render(elapsed: float) -> str:
        if streamed:  # how many there are is known at the end
            return f"[backtest] {done[0]:,} {noun} of {history.symbol} {rate(done[0], elapsed)}"
        share = done[0] / total if total else 1.0
        bar = "#" * int(share * 30)
        return (f"[backtest] [{bar:<30}] {done[0]:,}/{total:,} {noun} {share:6.1%} "
                f"{rate(done[0], elapsed)}")  # fmt: skip

    meter = Progress(render, SystemClock())
    last = [0.0]

    def on_progress(count: int, _: int) -> None:
        done[0] = count
        now = meter.clock.monotonic()
        if now - last[0] >= meter.period or count == total:
            last[0] = now
            meter.show()

    try:
        result = backtest(strategy, history, fee=fee_rate, initial_cash=initial, quantity=fixed,
                          price_source=source, on_progress=on_progress)  # fmt: skip
        if streamed:
            meter.show()  # the final count, known only now
        return result
    finally:
        meter.finish()


@app.command()
def backtest(
    data: DataOpt = None,
    synthetic: SyntheticOpt = False,
    bars: BarsOpt = 5000,
    symbol: BacktestSymbolOpt = None,
    interval: BacktestIntervalOpt = None,
    strategy: StrategyOpt = DEFAULT_STRATEGY,
    param: ParamOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    short: ShortOpt = None,
    long: LongOpt = None,
    fee: FeeOpt = "0.001",
    initial_cash: CashOpt = "10000",
    quantity: BuyQuantityOpt = None,
    price_source: PriceSourceOpt = "mid",
    seed: SeedOpt = 42,
    as_json: JsonOpt = False,
) -> None:
    """Backtest a strategy (the SMA crossover by default) on history, through the live
    processor's code path."""
    configure_logging(sys.stderr)
    spec = checked(lambda: strategy_spec(strategy, param, short, long))
    history = checked(lambda: command_history(data, synthetic, bars, symbol, interval, seed))
    result = checked(
        lambda: _run_backtest(
            history,
            spec,
            fee,
            initial_cash,
            quantity,
            price_source,
            progress=sys.stderr.isatty() or not as_json,
        )
    )
    _report_rejects(history)  # after the run: a recording's bad lines are known once read
    if as_json:
        body = {
            "signals": [signal_view(s) for s in result.signals],
            "trades": [trade_view(t) for t in result.trades],
            "metrics": result.metrics(),
        }
        typer.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    metrics = result.metrics()
    metrics["params"] = ", ".join(f"{k}={v}" for k, v in result.params)
    for key in ("total_return", "max_drawdown", "win_rate"):
        if metrics[key] is not None:
            metrics[key] = f"{metrics[key]:.2%}"
    if result.closed_bars:
        metrics["first_bar"] = iso(result.closed_bars[0].open_time)
        metrics["last_bar"] = iso(result.closed_bars[-1].open_time)
    print_summary(f"backtest of {history.source}", metrics, as_json=False)


@app.command()
def parity(
    data: Annotated[str, typer.Option("--data", help="A recorded raw session to replay.")],
    symbol: BacktestSymbolOpt = None,
    interval: IntervalOpt = "1m",
    strategy: StrategyOpt = DEFAULT_STRATEGY,
    param: ParamOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    short: ShortOpt = None,
    long: LongOpt = None,
    price_source: PriceSourceOpt = "mid",
) -> None:
    """Prove the live path and backtest agree: same signals, same ids, or exit 1."""
    from algotrade.apps.backtesting import parity as compare

    configure_logging(sys.stderr, level="warning")
    spec = checked(lambda: strategy_spec(strategy, param, short, long))
    source = checked(lambda: _price_source(price_source))
    result = checked(
        lambda: compare(
            data,
            spec.factory(),
            interval=interval,
            symbol=symbol,
            price_source=source,
        )
    )
    typer.echo(f"parity of {data} ({result.symbol}, {interval}, {spec.describe()}, "
               f"{result.events:,} market events, {result.seconds:.1f}s)")  # fmt: skip
    typer.echo(f"  live path (collector, store, processor follow, outbox): "
               f"{len(result.live)} signals")  # fmt: skip
    typer.echo(f"  backtest:                                           {len(result.backtest)} "
               "signals")  # fmt: skip
    if result.identical:
        typer.echo("  identical: every signal, id and field alike")
        return
    typer.echo("  DIFFERENT:", err=True)
    for line in result.differences():
        typer.echo(f"    {line}", err=True)
    raise typer.Exit(1)


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="report.html or report.png.")],
    data: DataOpt = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Report the stored live bars, signals and orders instead."),
    ] = None,
    synthetic: SyntheticOpt = False,
    bars: BarsOpt = 5000,
    symbol: BacktestSymbolOpt = None,
    interval: BacktestIntervalOpt = None,
    strategy: StrategyOpt = DEFAULT_STRATEGY,
    param: ParamOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    short: ShortOpt = None,
    long: LongOpt = None,
    fee: FeeOpt = "0.001",
    initial_cash: CashOpt = "10000",
    quantity: BuyQuantityOpt = None,
    seed: SeedOpt = 42,
    optimization: Annotated[
        Path | None,
        typer.Option(
            "--optimization",
            help="Report an optimisation instead: the output of algotrade optimize --json "
            "(a heatmap of the objective; a walk-forward's out-of-sample equity).",
        ),
    ] = None,
    x: Annotated[
        str | None, typer.Option("--x", help="--optimization: the heatmap's across parameter.")
    ] = None,
    y: Annotated[
        str | None, typer.Option("--y", help="--optimization: the heatmap's up parameter.")
    ] = None,
) -> None:
    """Chart price, both SMAs, the BUY/SELL markers and the equity curve into HTML or PNG;
    or, with --optimization, the heatmap and walk-forward curve of an optimisation."""
    from algotrade.apps.report import from_backtest, write_report

    configure_logging(sys.stderr)
    spec = checked(lambda: strategy_spec(strategy, param, short, long))
    if out.suffix.lower() not in (".html", ".htm", ".png"):
        checked(lambda: option_error("out", f"{out.name}: a report is .html or .png"))
    if optimization is not None:
        if data is not None or synthetic or store is not None:
            checked(
                lambda: option_error(
                    "optimization", "give --optimization, or --data / --synthetic / --store"
                )
            )
        _optimization_report(optimization, out, x, y)
        return
    if store is not None:
        if data is not None or synthetic:
            checked(
                lambda: option_error("store", "give --store, or --data / --synthetic, not both")
            )
        cash = checked(lambda: option_decimal("initial_cash", initial_cash, positive=True))
        drawn = execute(lambda: _live_report(store, symbol or "BTCUSDT", interval or "1d",
                                             spec, cash))  # fmt: skip
    else:
        history = checked(lambda: command_history(data, synthetic, bars, symbol, interval, seed))
        result = checked(
            lambda: _run_backtest(history, spec, fee, initial_cash, quantity, "mid", progress=True)
        )
        _report_rejects(history)
        drawn = from_backtest(result)
    path = checked(lambda: write_report(drawn, out))
    typer.echo(f"wrote {path} ({len(drawn.times):,} bars, {len(drawn.markers)} signals)")


def _optimization_report(source: Path, out: Path, x: str | None, y: str | None) -> None:
    from algotrade.apps.optimization_report import from_optimization, write_optimization_report

    def read() -> Any:
        try:
            return orjson.loads(source.read_bytes())
        except OSError as e:
            raise ConfigurationError("optimization", f"cannot read {source}: {e.strerror}"
                                     ) from None  # fmt: skip
        except orjson.JSONDecodeError as e:
            raise ConfigurationError("optimization", f"{source} is not JSON: {e}") from None

    drawn = checked(lambda: from_optimization(read(), x, y))
    path = checked(lambda: write_optimization_report(drawn, out))
    typer.echo(f"wrote {path} ({len(drawn.cells):,} cells of {drawn.objective} by {drawn.x}"
               + (f" and {drawn.y}" if drawn.y else "")
               + (f", {len(drawn.curve):,} bars of walk-forward equity" if drawn.curve else "")
               + ")")  # fmt: skip


async def _live_report(
    store: str, symbol: str, interval: str, spec: StrategySpec, cash: Decimal
) -> Any:
    from algotrade.apps.report import from_live
    from algotrade.apps.wiring import open_store
    from algotrade.domain.processing import signal_stream
    from algotrade.domain.streams import bar_stream

    bars_interval = Interval.parse(interval)
    name = parse_symbols([symbol])[0]
    strategy = spec.build()
    db = open_store(store, patient=False, existing="store")
    try:
        stored_bars = await db.read_stream(bar_stream(name, bars_interval.name))
        stored_signals = await db.read_stream(signal_stream(name, bars_interval.name, strategy))
        closed = [b for b in stored_bars if isinstance(b, BarClosed)]
        if not closed:
            # Say which intervals are there (the first bars stored tell): `make run`
            # stores 10s bars, and the report's default is 1d.
            first = await db.read_all(0, limit=5000, types=(BarClosed,))
            names = {e.interval for s in first if isinstance(e := s.event, BarClosed)
                     and e.symbol == name}  # fmt: skip
            found = sorted(names, key=lambda i: Interval.parse(i).nanos)
            hint = f" (stored: {', '.join(found)}; choose with --interval)" if found else ""
            raise ConfigurationError(
                "store", f"no stored {bars_interval.name} bars of {name}{hint}: run the "
                "processor with that --interval, or report a backtest with --data"
            )  # fmt: skip
    finally:
        await db.close()
    signals = [s for s in stored_signals if isinstance(s, SignalEmitted)]
    ids = {s.signal_id for s in signals}
    fills = [f for f in await read_stored(store, OrderFilled) if f.signal_id in ids]
    return from_live(closed, signals, fills, initial_cash=cash, params=dict(strategy.params),
                     title=f"{name} {bars_interval.name} {spec.describe()}: live, "
                     f"from {store}")  # fmt: skip


@app.command()
def strategies(as_json: JsonOpt = False) -> None:
    """List the strategies --strategy can name, with their parameters and defaults."""
    from algotrade.apps.strategies import available, parameters

    rows = []
    for name, cls, where in available():
        params = [p.describe() for p in parameters(cls)] if cls is not None else []
        first = (cls.__doc__ or "").strip().split("\n\n")[0] if cls is not None else ""
        doc = " ".join(first.replace("``", "").split()) if cls is not None else "does not load"
        rows.append({"name": name, "from": where, "params": params, "about": doc})
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for row in rows:
        typer.echo(f"{row['name']}  ({row['from']})  {row['about']}")
        for described in row["params"]:
            typer.echo(f"    {described}")
    typer.echo("Any other: --strategy package.module:Class or --strategy path/to/file.py:Class.")
