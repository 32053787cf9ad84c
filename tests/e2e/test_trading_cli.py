"""`algotrade trader --gateway binance` as users run it, against the fake exchange."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import anyio
import anyio.from_thread
import pytest

from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.domain.events import SignalEmitted
from algotrade.domain.values import Side, derived_id
from tests.e2e.test_cli import algotrade
from tests.support.fake_binance import FakeBinance
from tests.support.fake_trading import API_KEY, API_SECRET, FakeTrading
from tests.support.processes import (
    GATEWAY_METRICS,
    down_naming,
    stack_metric_names,
    start_service,
    up,
    wait_until,
)


@dataclass
class Exchange:
    """The fake exchange running in a thread of its own."""

    market: FakeBinance
    trading: FakeTrading
    portal: anyio.from_thread.BlockingPortal

    def env(self) -> dict[str, str]:
        """Return the environment that points a trader at the fake account."""
        return {
            **os.environ,
            "ALGOTRADE_GATEWAY": "binance",
            "ALGOTRADE_BINANCE_API_KEY": API_KEY,
            "ALGOTRADE_BINANCE_API_SECRET": API_SECRET,
            "ALGOTRADE_BINANCE_TRADING_URL": self.trading.rest_url,
            "ALGOTRADE_BINANCE_USER_STREAM_URL": self.trading.stream_url,
        }


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    """Run the fake exchange (market and trading sides) while the test runs commands."""
    with contextlib.ExitStack() as stack:
        portal = stack.enter_context(anyio.from_thread.start_blocking_portal())
        fake = FakeBinance(("BTCUSDT",), rate=10.0)
        market = stack.enter_context(portal.wrap_async_context_manager(fake))
        market.pause()
        trading = FakeTrading(market, balances={"USDT": "100000"})
        stack.enter_context(portal.wrap_async_context_manager(trading))
        yield Exchange(market, trading, portal)


def store_signals(path: Path, count: int) -> list[SignalEmitted]:
    """Store ``count`` alternating signals in a SQLite store, as the processor would."""
    signals = [
        SignalEmitted(
            stream="signals-BTCUSDT", version=i + 1, exchange_ts=i, receive_ts=i,
            signal_id=derived_id("e2e-signal", i), symbol="BTCUSDT", interval="1m",
            side=Side.BUY if i % 2 == 0 else Side.SELL, price=Decimal(30000), short_sma=1.0,
            long_sma=2.0, bar_time=i, strategy="sma_crossover",
        )
        for i in range(count)
    ]  # fmt: skip

    async def write() -> None:
        store = SqliteEventStore(path)
        try:
            await store.append(signals)
        finally:
            await store.close()

    anyio.run(write)
    return signals


def test_the_trader_process_trades_each_stored_signal_once_on_binance(
    exchange: Exchange, tmp_path: Path
) -> None:
    """Four stored signals, the trader run twice: four orders on the exchange, each stored
    FILLED as the exchange reports it, the position flat like the BTC balance, and the
    secret in no output."""
    db = tmp_path / "trading.db"
    signals = store_signals(db, 4)
    args = ("trader", "--store", str(db), "--port", "0", "--duration", "6s", "--json")

    first = algotrade(*args, env=exchange.env())
    second = algotrade(*args, env=exchange.env())  # the same signals, from the start

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert json.loads(first.stdout)["orders"] == 4
    assert json.loads(second.stdout)["orders"] == 0
    assert len(exchange.trading.posts) == 4
    for s in signals:
        assert len(exchange.trading.by_client_id(s.signal_id)) == 1
    orders = json.loads(algotrade("orders", "--store", str(db), "--json").stdout)
    assert [o["status"] for o in orders] == ["FILLED"] * 4
    for order in orders:
        (placed,) = exchange.trading.by_client_id(order["id"])
        assert Decimal(order["executed"]) == placed.executed
    position = json.loads(algotrade("positions", "--store", str(db), "--json").stdout)
    assert Decimal(position[0]["quantity"]) == exchange.trading.balance("BTC") == 0
    for output in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert API_SECRET not in output
    assert "trading on Binance" in first.stderr


def test_the_kill_switch_stops_orders_until_resumed(exchange: Exchange, tmp_path: Path) -> None:
    """`trader --halt` makes the next trader store its signal's order rejected with the
    reason and send nothing; `--resume` clears it."""
    db = tmp_path / "halt.db"
    store_signals(db, 1)
    halted = algotrade("trader", "--store", str(db), "--halt", "--reason", "drill", "--json")
    assert halted.returncode == 0, halted.stderr
    assert json.loads(halted.stdout)["halted"] is True

    run = algotrade(
        "trader", "--store", str(db), "--port", "0", "--duration", "4s", "--json",
        env=exchange.env(),
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["halted"] == 1
    (order,) = json.loads(algotrade("orders", "--store", str(db), "--json").stdout)
    assert order["status"] == "REJECTED"
    assert order["reason"] == "trading halted by the kill switch: drill"
    assert exchange.trading.posts == []
    resumed = algotrade("trader", "--store", str(db), "--resume", "--json")
    assert json.loads(resumed.stdout)["halted"] is False


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--gateway", "kraken"], "--gateway"),
        (["--gateway", "binance"], "--binance-api-key"),
        (["--gateway", "binance", "--binance-api-key", "k"], "--binance-api-secret"),
        (["--gateway", "binance", "--binance-api-key", "k", "--binance-api-secret", "s",
          "--binance-trading-url", "https://api.binance.com"], "--production"),
        (["--balance-fraction", "2"], "--balance-fraction"),
        (["--quote-amount", "100", "--balance-fraction", "0.5"], "--quote-amount"),
        (["--max-position", "-1"], "--max-position"),
    ],
)  # fmt: skip
def test_unsafe_or_malformed_trading_options_exit_2(
    args: list[str], named: str, tmp_path: Path
) -> None:
    """Production URLs without --production, missing keys and impossible sizes are refused
    at start-up, naming the option."""
    result = algotrade("trader", "--store", str(tmp_path / "x.db"), *args, timeout=60)

    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "--binance-api-secret s" not in result.stderr


def test_the_trader_service_reports_exchange_metrics_and_stops_cleanly(
    exchange: Exchange, tmp_path: Path
) -> None:
    """A running Binance trader shows its orders, the exchange requests and the user data
    stream in /metrics; /healthcheck names binance DOWN while the user data stream is cut
    and UP once it is back; SIGTERM stops it with status 0."""
    db = tmp_path / "service.db"
    store_signals(db, 2)
    trader = start_service("trader", ["--store", str(db)], exchange.env(), tmp_path)
    try:
        wait_until(lambda: trader.figure("algotrade_orders_total") == 2, 60, "two orders")
        figures = trader.metrics()
        assert figures["algotrade_exchange_requests_total"] >= 4
        assert figures["algotrade_user_stream_connections_total"] >= 1
        assert figures["algotrade_working_orders"] == 0
        # What the dashboard and the alert rules read from a Binance trader is exported.
        assert stack_metric_names() >= GATEWAY_METRICS
        assert not GATEWAY_METRICS - set(figures), sorted(GATEWAY_METRICS - set(figures))
        wait_until(lambda: up(trader, "/healthcheck"), 30, "binance UP")

        def cut() -> None:
            exchange.trading.user_streams_down = True
            exchange.trading.drop_user_streams()

        exchange.portal.call(cut)
        wait_until(lambda: down_naming(trader, "/healthcheck", "binance"), 30, "binance DOWN")
        exchange.trading.user_streams_down = False
        wait_until(lambda: up(trader, "/healthcheck"), 60, "binance UP again")
        assert trader.stop() == 0
    finally:
        trader.close()
    assert API_SECRET not in trader.output()
