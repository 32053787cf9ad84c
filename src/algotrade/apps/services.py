"""The three services as processes: each one bootstrapped, then served until stopped.

``run_collector``, ``run_processor`` and ``run_trader`` build their app from its settings
object (:mod:`algotrade.apps.bootstrap`) and serve it (:func:`algotrade.apps.serving.run_app`:
health and metrics over HTTP, progress, profiling, a clean stop on SIGTERM or SIGINT).
"""

from __future__ import annotations

from typing import Any

from algotrade.adapters.memory import SystemClock
from algotrade.apps.bootstrap import bootstrap_collector, bootstrap_processor, bootstrap_trader
from algotrade.apps.serving import run_app
from algotrade.apps.settings import CollectorSettings, ProcessorSettings, TraderSettings
from algotrade.apps.wiring import open_store
from algotrade.services.trader import set_kill_switch


async def run_collector(settings: CollectorSettings) -> dict[str, Any]:
    """Run the collector: feed into the store, until stopped (or a replay ends)."""
    return await run_app(await bootstrap_collector(settings), settings.service)


async def run_processor(settings: ProcessorSettings) -> dict[str, Any]:
    """Run the processor: follow the store's market events until stopped.

    With Redis settings, an outbox relay publishes every stored signal to the stream.
    """
    return await run_app(await bootstrap_processor(settings), settings.service)


async def run_trader(settings: TraderSettings) -> dict[str, Any]:
    """Run the trader: the Redis group's signals (or the store's) into orders, until stopped.

    With ``--gateway binance`` the orders go to Binance and an order follower keeps the
    stored orders and position in step with the account's user data stream.
    """
    return await run_app(await bootstrap_trader(settings), settings.service)


async def run_kill_switch(store_url: str, *, halt: bool, reason: str) -> dict[str, Any]:
    """Set or clear the kill switch in the store every trader reads."""
    store = open_store(store_url, patient=False, existing="store")
    try:
        event = await set_kill_switch(store, halt=halt, reason=reason, clock=SystemClock())
    finally:
        await store.close()
    return {"halted": halt, "reason": reason, "version": event.version}
