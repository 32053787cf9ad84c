"""The ``download`` command: Binance's public kline archives into the data directory."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated

import orjson
import typer

from algotrade.apps.cli.app import app
from algotrade.apps.cli.exits import checked
from algotrade.apps.cli.options import JsonOpt
from algotrade.apps.logs import configure_logging


@app.command()
def download(
    symbols: Annotated[list[str], typer.Argument(help="Symbols: BTCUSDT ETHUSDT ...")],
    interval: Annotated[str, typer.Option("--interval", help="Kline interval: 1s .. 1mo.")] = "1m",
    start: Annotated[
        str, typer.Option("--start", help="First month or day: YYYY-MM or YYYY-MM-DD.")
    ] = "2024-01",
    end: Annotated[
        str | None,
        typer.Option("--end", help="Last month or day (default: yesterday, UTC)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="ALGOTRADE_DATA_DIR",
            help="Where archives are kept (default: $XDG_DATA_HOME/algotrade, that is "
            "~/.local/share/algotrade); backtest --data SYMBOL:INTERVAL reads it.",
        ),
    ] = None,
    base_url: Annotated[
        str,
        typer.Option("--base-url", envvar="ALGOTRADE_ARCHIVE_URL", help="The public data server."),
    ] = "https://data.binance.vision",
    retries: Annotated[
        int, typer.Option("--retries", help="Attempts per file after a cut connection.")
    ] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Download Binance's public kline archives (data.binance.vision): monthly ones, daily
    ones where no month is published; each verified against its SHA-256, a cut download
    resumed. Exit 1 if any archive failed (a rerun resumes it)."""
    from algotrade.adapters.binance.archives import Downloader, Outcome, parse_day, plan
    from algotrade.adapters.memory import SystemClock
    from algotrade.apps.common import Progress
    from algotrade.apps.settings import data_directory

    configure_logging(sys.stderr, level="warning")
    today = datetime.now(UTC).date()
    first = checked(lambda: parse_day(start))
    last = checked(lambda: parse_day(end, end=True)) if end else today
    plans = {}
    for symbol in symbols:
        plans[symbol.upper()] = checked(partial(plan, symbol, interval, first, last, today))
    root = data_dir.expanduser() if data_dir else data_directory()
    got = [0, 0]  # bytes, files
    meter = Progress(lambda e: f"[download] {got[1]:,} files, {got[0] / 1e6:,.1f} MB "
                     f"{got[0] / 1e6 / e if e > 0 else 0:,.1f} MB/s", SystemClock())  # fmt: skip
    shown = [float("-inf")]

    def counted(size: int) -> None:
        got[0] += size
        now = meter.clock.monotonic()
        if now - shown[0] >= meter.period:
            shown[0] = now
            meter.show()

    downloader = Downloader(root, base_url=base_url, retries=retries, on_bytes=counted)
    outcomes: dict[str, Outcome] = {}
    try:
        for symbol, archives in plans.items():
            outcomes[symbol] = downloader.download(
                archives, first, min(last, today), on_file=partial(_one, got)
            )
    finally:
        downloader.close()
    meter.show()
    meter.finish()
    failed = any(o.failed for o in outcomes.values())
    if as_json:
        body = {symbol: {"kept": [a.name for a in o.kept],
                         "present": [a.name for a in o.present],
                         "missing": [a.name for a in o.missing],
                         "failed": [{"archive": a.name, "error": e} for a, e in o.failed],
                         "resumed": o.resumed, "bytes": o.downloaded_bytes}
                for symbol, o in outcomes.items()}  # fmt: skip
        typer.echo(orjson.dumps({"data_dir": str(root), "symbols": body},
                                option=orjson.OPT_INDENT_2).decode())  # fmt: skip
    else:
        for symbol, o in outcomes.items():
            typer.echo(f"{symbol} {interval}: {len(o.kept)} downloaded "
                       f"({o.downloaded_bytes / 1e6:,.1f} MB, {o.resumed} resumed), "
                       f"{len(o.present)} already kept, {len(o.missing)} not published, "
                       f"{len(o.failed)} failed")  # fmt: skip
            if o.missing:
                typer.echo("  not published: " + ", ".join(a.name for a in o.missing))
            for _, error in o.failed:
                typer.echo(f"  failed: {error}")
            if o.kept or o.present:
                typer.echo(f"  backtest: algotrade backtest --data {symbol}:{interval}")
        typer.echo(f"kept in {root}")
    if failed:
        raise typer.Exit(1)


def _one(got: list[int]) -> None:
    got[1] += 1
