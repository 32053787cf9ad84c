"""Reliability under chaos: two of every service as real processes (the collectors and
the processors on the same symbol and strategy), killed and restarted at random while Redis
and MongoDB restart, the exchange drops connections and skips update ids; at the end
nothing is lost and nothing is doubled.

``ALGOTRADE_CHAOS_SEED`` picks the schedule (printed, so a failure replays), and
``ALGOTRADE_CHAOS_SECONDS`` its length (60 s by default, the bounded form CI runs).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
import redis

from algotrade.adapters.mongo import MongoEventStore
from algotrade.apps.settings import StrategySettings
from algotrade.domain.bars import Interval
from algotrade.domain.events import SignalEmitted
from algotrade.services.processor import MARKET_TYPES
from tests.support.fake_binance import FakeBinance
from tests.support.processes import (
    assert_depth_complete,
    cli,
    group_state,
    start_service,
    stored_depth,
    wait_until,
    wait_up,
)
from tests.support.servers import MongoServer, RedisServer, with_database

pytestmark = pytest.mark.chaos
SEED = int(os.environ.get("ALGOTRADE_CHAOS_SEED", "7"))
SECONDS = float(os.environ.get("ALGOTRADE_CHAOS_SECONDS", "60"))
STRATEGY = ["--interval", "1s", "--short", "3", "--long", "8"]


@pytest.fixture
def exchange() -> Iterator[FakeBinance]:
    """Run the fake exchange (one symbol, a seeded synthetic market) in a thread."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(FakeBinance(("BTCUSDT",), rate=30.0, seed=SEED)) as fake,
    ):
        yield fake


def clean_replay_signal_ids(url: str) -> list[str]:
    """Return the signal ids a fresh single processor derives from the stored market data."""

    async def replay() -> list[str]:
        store = MongoEventStore(url, give_up_after=30.0)
        processor = StrategySettings(Interval.parse("1s"), 3, 8).processor()
        ids: list[str] = []
        after = 0
        try:
            while batch := await store.read_all(after, limit=5000, types=MARKET_TYPES):
                for stored in batch:
                    for out in processor.on_event(stored.event, stored.position):
                        if isinstance(out, SignalEmitted):
                            ids.append(out.signal_id)
                after = batch[-1].position
        finally:
            await store.close()
        return ids

    return anyio.run(replay)


@pytest.mark.timeout(SECONDS + 600)  # the chaos, then start-up, calm and checks
def test_nothing_lost_nothing_doubled_under_chaos(
    exchange: FakeBinance, own_servers: tuple[RedisServer, MongoServer], tmp_path: Path
) -> None:
    """Kill and restart instances, Redis and MongoDB, drop the exchange, skip update ids:
    every depth event stored once with each gap recorded, signals equal to a clean replay,
    one order per signal, nothing pending, every service healthy at the end."""
    redis_server, mongo_server = own_servers
    url = with_database(mongo_server.url, "btc_data")
    env = {
        **os.environ,
        "ALGOTRADE_MONGO_URL": url,
        "ALGOTRADE_REDIS_URL": redis_server.url,
        "ALGOTRADE_BINANCE_WS_URL": exchange.ws_url,
        "ALGOTRADE_BINANCE_REST_URL": exchange.rest_url,
        "ALGOTRADE_DEPTH_RETENTION": "0",
        "ALGOTRADE_CLAIM_IDLE": "2s",
    }
    env.pop("ALGOTRADE_STORE", None)
    specs: dict[str, list[str]] = {
        "collector-1": [],
        "collector-2": [],
        "processor-1": STRATEGY,
        "processor-2": STRATEGY,
        "trader-1": ["--consumer", "t1"],
        "trader-2": ["--consumer", "t2"],
    }
    running = {name: start_service(name, args, env, tmp_path) for name, args in specs.items()}
    rng = random.Random(SEED)
    actions: dict[str, int] = {}
    log: list[str] = []

    def act(name: str, do: Callable[[], None]) -> None:
        actions[name] = actions.get(name, 0) + 1
        log.append(f"{time.strftime('%H:%M:%S')} {name}")
        do()

    def kill_one() -> None:
        victim = rng.choice(sorted(running))
        service = running[victim]
        service.process.kill()
        service.process.wait()
        service.close()
        log[-1] += f" {victim}"
        time.sleep(rng.uniform(0.5, 3.0))
        running[victim] = start_service(victim, specs[victim], env, tmp_path)

    def restart(server: RedisServer | MongoServer) -> Callable[[], None]:
        def do() -> None:
            server.stop()
            time.sleep(rng.uniform(1.0, 3.0))
            server.start()

        return do

    chaos: list[tuple[str, Callable[[], None]]] = [
        ("kill an instance", kill_one),
        ("kill an instance", kill_one),
        ("kill an instance", kill_one),
        ("restart Redis", restart(redis_server)),
        ("restart MongoDB", restart(mongo_server)),
        ("drop the exchange", exchange.drop),
        ("skip update ids", lambda: exchange.skip("BTCUSDT", 5)),
    ]
    try:
        for service in running.values():
            wait_up(service, 120, f"{service.name} ready")
        print(f"chaos seed {SEED} for {SECONDS:g}s")
        ends = time.monotonic() + SECONDS
        while time.monotonic() < ends:
            time.sleep(rng.uniform(2.0, 5.0))
            name, do = rng.choice(chaos)
            act(name, do)

        print("\n".join(log))  # the schedule as run (shown when a later step fails)
        # Calm: every service comes back healthy while the market still moves, then the
        # market stops and the pipeline drains.
        for service in running.values():
            wait_up(service, 120, f"{service.name} healthy after chaos")
        exchange.pause()
        time.sleep(3)
        for name in ("collector-1", "collector-2"):
            assert running[name].stop() == 0, running[name].output()
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:

            def drained() -> bool:
                signals = len(cli("signals", env=env))
                return len(cli("orders", env=env)) >= signals and group_state(client)["lag"] == 0

            try:
                wait_until(drained, 120, "every signal acted upon")
            except AssertionError as e:  # say which signals and what the group holds
                stored = {s["id"] for s in cli("signals", env=env)}
                acted = {o["signal_id"] for o in cli("orders", env=env)}
                raise AssertionError(
                    f"{e}: signals without an order {sorted(stored - acted)}, "
                    f"group {group_state(client)}, stream length "
                    f"{client.xlen('trade_signals_stream')}"
                ) from None
            for name in ("processor-1", "processor-2", "trader-1", "trader-2"):
                assert running[name].stop() == 0, running[name].output()
            group = group_state(client)
            dead = client.xlen("trade_signals_dead")
        finally:
            client.close()
    finally:
        for service in running.values():
            service.close()

    signals = cli("signals", env=env)
    orders = cli("orders", env=env)
    replayed = clean_replay_signal_ids(url)
    depth = stored_depth(url, "BTCUSDT")
    gaps = cli("gaps", env=env)
    rows = [
        ("chaos actions", ", ".join(f"{k} x{v}" for k, v in sorted(actions.items()))),
        ("depth events stored", len(depth)),
        ("gaps recorded", len(gaps)),
        ("signals stored / clean replay", f"{len(signals)} / {len(replayed)}"),
        ("orders", len(orders)),
        ("pending entries", group["pending"]),
        ("dead letters", dead),
    ]
    print("\n".join(f"  {k:<32} {v}" for k, v in rows))
    print("\n".join(log))
    assert_depth_complete(depth)
    assert sorted(s["id"] for s in signals) == sorted(replayed)
    assert len(signals) >= 2
    order_signals = [o["signal_id"] for o in orders]
    assert len(order_signals) == len(set(order_signals))  # no signal acted on twice
    assert sorted(order_signals) == sorted(s["id"] for s in signals)
    assert group["pending"] == 0
    assert dead == 0
