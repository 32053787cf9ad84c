"""``algotrade run``: the pipeline :func:`~algotrade.apps.bootstrap.bootstrap_run` built
(collector, processor and trader in one process), run until its source ends, the duration
passes or a signal arrives; then drained in order, and summed up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from algotrade.apps.bootstrap import Pipeline
from algotrade.apps.common import (
    Progress,
    book_tops,
    peak_rss_mib,
    rate,
    stop_after,
    stop_on_signals,
)
from algotrade.apps.logs import log
from algotrade.apps.settings import RunSettings
from algotrade.domain.values import decimal_text


def render_run(p: Pipeline, elapsed: float) -> str:
    """Return the one-line progress of a run."""
    c, pr, t = p.collector.stats, p.processor.stats, p.trader.stats
    return (
        f"[run] {elapsed:6.1f}s {book_tops(p.collector)} events={c.received:,}"
        f" ({rate(c.received, elapsed)})"
        f" stored={c.stored:,} gaps={c.gaps} bars={pr.bars:,} signals={pr.signals}"
        f" orders={t.orders}"
    )


async def summary(p: Pipeline, elapsed: float) -> dict[str, Any]:
    """Return the end-of-run figures."""
    c, pr, t = p.collector.stats, p.processor.stats, p.trader.stats
    positions = {}
    for symbol in p.collector.books:
        pos = await p.trader.position(symbol)
        top = p.collector.top(symbol)
        mark = top.mid if top is not None else None
        unrealised = pos.unrealised_pnl(mark)
        positions[symbol] = {
            "quantity": decimal_text(pos.quantity),
            "average_price": decimal_text(pos.average_price),
            "mark": None if mark is None else decimal_text(mark),
            "realised_pnl": decimal_text(pos.realised_pnl),
            "unrealised_pnl": decimal_text(unrealised),
            "fees_paid": decimal_text(pos.fees_paid),
            "net_pnl": decimal_text(pos.realised_pnl + unrealised - pos.fees_paid),
        }
    return {
        "seconds": round(elapsed, 3),
        "peak_rss_mib": peak_rss_mib(),
        "events": c.received,
        "events_per_second": round(c.received / elapsed) if elapsed > 0 else None,
        "stored": c.stored,
        "duplicates": c.duplicates,
        "gaps": c.gaps,
        "rejected_inputs": c.rejected,
        "bars": pr.bars,
        "signals": pr.signals,
        "orders": t.orders,
        "filled": t.filled,
        "rejected_orders": t.rejected,
        "positions": positions,
    }


async def run_pipeline(p: Pipeline, settings: RunSettings) -> dict[str, Any]:
    """Run until the source ends, the duration passes or a signal arrives; then drain."""
    stop = anyio.Event()
    trader_stop = anyio.Event()
    started = p.clock.monotonic()
    progress = Progress(lambda e: render_run(p, e), p.clock)

    def on_signal(name: str) -> None:
        log("run", f"{name} received: stopping after flushing")

    async with anyio.create_task_group() as tg:
        await tg.start(stop_on_signals, stop, on_signal)
        if settings.progress:
            tg.start_soon(progress.run)
        if settings.duration is not None:
            tg.start_soon(stop_after, settings.duration, stop)
        drained = anyio.Event()
        relay_stop, relayed = anyio.Event(), anyio.Event()
        tg.start_soon(lambda: p.trader.run(trader_stop, drained=drained))
        if p.relay is not None:
            tg.start_soon(_run_then_set, p.relay.run, relay_stop, relayed)
        else:
            relayed.set()
        try:
            await p.collector.run(stop)
        finally:
            # Drain in order: outbox published, then every published signal acted upon.
            relay_stop.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                await relayed.wait()
            trader_stop.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                await drained.wait()
            tg.cancel_scope.cancel()
    elapsed = p.clock.monotonic() - started
    if settings.progress:
        progress.show()
        progress.finish()
    result = await summary(p, elapsed)
    await p.store.close()
    if p.redis is not None:
        await p.redis.aclose()
    return result


async def _run_then_set(
    run: Callable[[anyio.Event], Awaitable[None]], stop: anyio.Event, done: anyio.Event
) -> None:
    try:
        await run(stop)
    finally:
        done.set()
