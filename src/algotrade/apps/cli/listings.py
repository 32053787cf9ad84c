"""The read commands: stored signals (and the live stream), orders, positions, depth, gaps."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, TypeVar

import orjson
import typer

from algotrade.adapters.redis import SIGNAL_STREAM
from algotrade.apps.cli.app import app
from algotrade.apps.cli.exits import checked, execute
from algotrade.apps.cli.options import JsonOpt, StoreOpt, StreamOpt, redis_settings
from algotrade.apps.common import DEFAULT_STORE, parse_symbols
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    OrderUpdated,
    PositionChanged,
    SequenceGapDetected,
    SignalEmitted,
)
from algotrade.domain.streams import depth_stream
from algotrade.services.views import (
    depth_view,
    gap_view,
    order_view,
    position_view,
    signal_view,
)

E = TypeVar("E", bound=Event)


signals_app = typer.Typer(help="Stored signals, and the live signal stream.")
app.add_typer(signals_app, name="signals")


async def read_stored(store: str, kind: type[E]) -> list[E]:
    from algotrade.apps.wiring import open_store

    db = open_store(store, patient=False, existing="store")
    try:
        out: list[E] = []
        after = 0
        while batch := await db.read_all(after, limit=1000, types=(kind,)):
            out.extend(s.event for s in batch if isinstance(s.event, kind))
            after = batch[-1].position
        return out
    finally:
        await db.close()


DEPTH_TYPES = (DepthDiffReceived, BookSnapshotTaken)
LISTING_PAGE = 2000  # events a listing reads at a time (and all it keeps in memory)


def _line(row: dict[str, Any] | None, columns: list[tuple[str, int]]) -> str:
    """Return one line of a table: ``row``'s cells, or the heading when ``row`` is None."""
    if row is None:
        return " ".join(f"{name:<{width}}" for name, width in columns).rstrip()
    cells = ("" if row.get(name) is None else str(row[name]) for name, _ in columns)
    return " ".join(f"{c:<{w}}" for c, (_, w) in zip(cells, columns, strict=True)).rstrip()


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, int]], noun: str) -> None:
    typer.echo(_line(None, columns))
    for row in rows:
        typer.echo(_line(row, columns))
    typer.echo(f"{len(rows)} {noun}")


@signals_app.callback(invoke_without_command=True)
def signals(ctx: typer.Context, store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False) -> None:
    """List the stored signals, oldest first."""
    if ctx.invoked_subcommand is not None:
        return
    rows = [signal_view(s) for s in execute(lambda: read_stored(store, SignalEmitted))]
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for r in rows:
        r["short_sma"] = f"{r['short_sma']:.4f}"
        r["long_sma"] = f"{r['long_sma']:.4f}"
    _table(
        rows,
        [("bar_time", 25), ("symbol", 9), ("side", 4), ("price", 14), ("short_sma", 14),
         ("long_sma", 14), ("id", 36)],
        "signal(s)",
    )  # fmt: skip


@signals_app.command("tail")
def signals_tail(
    redis_url: Annotated[
        str, typer.Option("--redis-url", envvar="ALGOTRADE_REDIS_URL", help="Redis URL.")
    ] = "redis://localhost:6379/0",
    signal_stream: StreamOpt = SIGNAL_STREAM,
    from_start: Annotated[bool, typer.Option("--from-start", help="Show older entries.")] = False,
    count: Annotated[int | None, typer.Option("--count", help="Stop after N entries.")] = None,
) -> None:
    """Follow the signal stream live, one JSON line per entry (Ctrl-C to stop)."""
    from algotrade.adapters.redis.tail import tail_stream
    from algotrade.apps.wiring import log_notices, redis_client

    redis = checked(lambda: redis_settings(redis_url, signal_stream))
    assert redis is not None

    async def main() -> None:
        if count is not None and count <= 0:
            return
        client = redis_client(redis)
        seen = 0
        try:
            entries = tail_stream(
                client, redis.stream, from_start=from_start, notify=log_notices("signals")
            )
            async for entry, fields in entries:
                typer.echo(orjson.dumps({"entry": entry, **fields}).decode())
                seen += 1
                if count is not None and seen >= count:
                    return
        finally:
            await client.aclose()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a tail ends
        execute(main)


@app.command()
def orders(store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False) -> None:
    """List the orders the trader stored, with their latest state."""

    async def main() -> list[dict[str, Any]]:
        placed = await read_stored(store, OrderPlaced)
        outcomes: dict[str, OrderFilled | OrderRejected | OrderUpdated] = {}
        found: list[OrderFilled | OrderRejected | OrderUpdated] = [
            *await read_stored(store, OrderFilled),
            *await read_stored(store, OrderRejected),
            *await read_stored(store, OrderUpdated),
        ]
        for outcome in sorted(found, key=lambda e: e.version):  # the latest state wins
            outcomes[outcome.order_id] = outcome
        return [order_view(p, outcomes.get(p.order_id)) for p in placed]

    rows = execute(main)
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    _table(
        rows,
        [("time", 25), ("symbol", 9), ("side", 4), ("quantity", 10), ("price", 14),
         ("status", 8), ("reason", 28), ("id", 36)],
        "order(s)",
    )  # fmt: skip


@app.command()
def positions(store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False) -> None:
    """Show each symbol's position: quantity, average price, realised PnL and fees."""

    async def main() -> list[dict[str, Any]]:
        latest: dict[str, PositionChanged] = {}
        for change in await read_stored(store, PositionChanged):
            latest[change.symbol] = change
        return [position_view(p) for p in latest.values()]

    rows = execute(main)
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    _table(
        rows,
        [("symbol", 9), ("quantity", 12), ("average_price", 16), ("realised_pnl", 16),
         ("fees_paid", 14), ("updated_at", 25)],
        "position(s)",
    )  # fmt: skip


@app.command()
def depth(
    symbol: Annotated[str, typer.Option("--symbol", help="The symbol to list.")] = "BTCUSDT",
    store: StoreOpt = DEFAULT_STORE,
    as_json: JsonOpt = False,
) -> None:
    """List a symbol's stored depth events (snapshots and diffs) in order, with top of book."""
    from algotrade.apps.wiring import open_store

    name = checked(lambda: parse_symbols([symbol])[0])
    stream = depth_stream(name)
    columns = [("kind", 9), ("first_update_id", 16), ("final_update_id", 16),
               ("event_time", 25), ("best_bid", 28), ("best_ask", 28)]  # fmt: skip

    def text(row: dict[str, Any]) -> str:
        if as_json:
            return orjson.dumps(row).decode()
        for side in ("best_bid", "best_ask"):
            row[side] = "" if row[side] is None else "@".join(reversed(row[side]))
        return _line(row, columns)

    async def main() -> int:
        # Page by page, written as read: a week of depth is millions of events, and the
        # listing keeps one page in memory, not the whole stream.
        db = open_store(store, patient=False, existing="store")
        count, after = 0, 0
        symbols: set[str] = set()  # those with depth, named when the asked one has none
        typer.echo("[" if as_json else _line(None, columns), nl=not as_json)
        try:
            while page := await db.read_all(after, limit=LISTING_PAGE, types=DEPTH_TYPES):
                after = page[-1].position
                if not count:
                    symbols.update(s.event.symbol for s in page if isinstance(s.event, DEPTH_TYPES))
                rows = [
                    text(depth_view(s.event))
                    for s in page
                    if s.event.stream == stream and isinstance(s.event, DEPTH_TYPES)
                ]
                if rows:
                    separator = "," if as_json else "\n"
                    lead = "," if as_json and count else ""
                    typer.echo(lead + separator.join(rows), nl=not as_json)
                    count += len(rows)
        finally:
            await db.close()
        if not count:
            held = ", ".join(sorted(symbols)) or "none"
            typer.echo(f"no depth events for {name}; symbols with depth: {held}", err=True)
        return count

    count = execute(main)
    typer.echo("]" if as_json else f"{count} depth event(s)")


@app.command()
def gaps(store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False) -> None:
    """List the stored sequence gaps (each followed by a resync of its symbol)."""
    rows = [gap_view(g) for g in execute(lambda: read_stored(store, SequenceGapDetected))]
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    _table(
        rows,
        [("symbol", 9), ("reason", 15), ("expected_update_id", 19), ("received_update_id", 19),
         ("missing", 9), ("detected_at", 25)],
        "gap(s)",
    )  # fmt: skip
