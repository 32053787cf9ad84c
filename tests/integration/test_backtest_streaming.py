"""Backtests on a store or a recording run as the events are read, a page at a time, and
give what the whole history loaded in memory gives."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from algotrade.adapters.memory import SystemClock
from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.adapters.synthetic import SyntheticFeed
from algotrade.apps.backtesting import MarketEvents, backtest, load_history
from algotrade.domain.backtest import BacktestResult
from algotrade.domain.bars import Interval
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.strategy import SmaCrossover
from algotrade.services.collector import Collector
from tests.e2e.test_cli import algotrade

SECOND = Interval.parse("1s")


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store with 40,000 synthetic market events of two symbols, interleaved."""
    path = tmp_path_factory.mktemp("streaming") / "market.db"

    async def main() -> None:
        store = SqliteEventStore(path)
        try:
            feed = SyntheticFeed(["BTCUSDT", "ETHUSDT"], seed=5, limit=40_000)
            await Collector(feed, store, SystemClock()).run(anyio.Event())
        finally:
            await store.close()

    anyio.run(main)
    return path


def same(a: BacktestResult, b: BacktestResult) -> None:
    assert a.signals == b.signals
    assert a.trades == b.trades
    assert a.metrics() == b.metrics()


def test_a_store_is_read_a_page_at_a_time(store_file: Path) -> None:
    """A backtest reads a store a page at a time, each page within its size, in position order."""
    events = MarketEvents(store_file, interval=SECOND)
    pages = list(events.pages(size=1_000))
    assert len(pages) > 10
    assert all(0 < len(page) <= 1_000 for page in pages)
    assert events.symbol == "BTCUSDT"
    assert events.other_symbols == {"ETHUSDT"}
    positions = [p for page in pages for _, p in page]
    assert positions == sorted(positions)
    assert events.read == len(positions)
    assert all(e.symbol == "BTCUSDT" for page in pages for e, _ in page)  # type: ignore[attr-defined]
    again = [p for page in events.pages(size=3_000) for _, p in page]
    assert again == positions  # each reading starts over


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_a_streamed_store_backtest_equals_the_loaded_one(store_file: Path, symbol: str) -> None:
    """Streamed (a week of depth no longer has to fit in memory: 1.29 GB for 145,000 depth
    events before) and loaded: the same signals, trades and figures."""
    streamed = backtest(SmaCrossover(3, 10), str(store_file), symbol=symbol, interval="1s")
    history = load_history(str(store_file), symbol=symbol, interval="1s")
    assert history.kind == "events"
    assert streamed.signals, "the synthetic market crosses over"
    same(streamed, backtest(SmaCrossover(3, 10), history))
    progress: list[tuple[int, int]] = []
    given = MarketEvents(f"sqlite:///{store_file}", symbol=symbol, interval=SECOND)
    same(streamed, backtest(SmaCrossover(3, 10), given, on_progress=lambda *a: progress.append(a)))
    assert progress[-1] == (len(history.items), 0)  # the count so far; no total known


def test_a_streamed_recording_backtest_equals_the_loaded_one(recording: Path) -> None:
    """A recording backtested as it is read gives the signals of the same recording loaded whole."""
    streamed = backtest(SmaCrossover(3, 10), recording, symbol="ETHUSDT", interval="1s")
    history = load_history(recording, symbol="ETHUSDT", interval="1s")
    assert streamed.signals
    same(streamed, backtest(SmaCrossover(3, 10), history))


def test_a_store_without_market_events_is_a_clear_error(tmp_path: Path) -> None:
    """A store holding no market event is a configuration error saying so."""
    path = tmp_path / "empty.db"
    anyio.run(SqliteEventStore(path).close)
    with pytest.raises(ConfigurationError, match="no market event stored in"):
        backtest(SmaCrossover(3, 10), str(path))


def test_the_cli_backtests_a_store_with_progress(store_file: Path) -> None:
    """`algotrade backtest --data STORE` backtests the stored events and shows its progress."""
    done = algotrade("backtest", "--data", str(store_file), "--symbol", "ETHUSDT",
                     "--interval", "1s", "--short", "3", "--long", "10")  # fmt: skip
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("[backtest]")]
    events = len(load_history(str(store_file), symbol="ETHUSDT", interval="1s").items)
    assert progress[-1].startswith(f"[backtest] {events:,} events of ETHUSDT")  # all of them
    assert "backtest of" in done.stdout
    assert "signals" in done.stdout


def test_a_symbol_the_data_does_not_hold_is_a_clear_error(
    store_file: Path, recording: Path
) -> None:
    """It used to give an empty backtest (0 bars, 0 signals) without a word."""
    with pytest.raises(ConfigurationError, match=r"no market event of DOTUSDT .*BTCUSDT, ETHUSDT"):
        backtest(SmaCrossover(3, 10), str(store_file), symbol="DOTUSDT")
    with pytest.raises(ConfigurationError, match="no market event of SOLUSDT in"):
        load_history(recording, symbol="SOLUSDT")
