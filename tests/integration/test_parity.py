"""Parity: a recording through the live services' path and through backtest give the same
signals, ids included, for every symbol, both price sources and every built-in strategy."""

from __future__ import annotations

from pathlib import Path

import pytest

from algotrade import ConfigurationError, SmaCrossover, parity
from algotrade.apps.strategies import resolve


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "DOTUSDT"])
@pytest.mark.parametrize("price_source", ["mid", "trade"])
def test_live_path_and_backtest_agree(recording: Path, symbol: str, price_source: str) -> None:
    """The live services' path and the backtest give the very same signals for a recording."""
    result = parity(
        recording, lambda: SmaCrossover(3, 10), interval="1s", symbol=symbol,
        price_source=price_source,  # type: ignore[arg-type]
    )  # fmt: skip
    assert result.live, "the session has crossovers"
    assert result.identical, result.differences()
    assert [s.signal_id for s in result.live] == [s.signal_id for s in result.backtest]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ema_crossover", [("fast", "3"), ("slow", "8")]),
        ("rsi_reversion", [("period", "5"), ("oversold", "40"), ("overbought", "60")]),
        ("bollinger_breakout", [("period", "8"), ("width", "1.5")]),
        (f"{Path(__file__).parents[1] / 'support' / 'strategies.py'}:Breakout",
         [("window", "6"), ("margin", "0.00001")]),
        (f"{Path(__file__).parents[1] / 'support' / 'strategies.py'}:TrendFilter",
         [("longer", "10s")]),
    ],
    ids=["ema_crossover", "rsi_reversion", "bollinger_breakout", "a file's strategy",
         "on two intervals"],
)  # fmt: skip
def test_every_built_in_strategy_and_a_users_have_parity(
    recording: Path, name: str, params: list[tuple[str, str]]
) -> None:
    """Every built-in strategy, and one from a file, gives the same signals through the
    live path and the backtest (``algotrade parity --strategy``)."""
    spec = resolve(name, params)
    result = parity(recording, spec.factory(), interval="1s", symbol="BTCUSDT")
    assert result.live, f"the session gives {name} signals"
    assert result.identical, result.differences()
    assert {s.strategy for s in result.live} == {spec.build().name}


def test_parity_needs_a_recording(tmp_path: Path) -> None:
    """A kline file (or a store) used to run: no live signal from lines that are not frames,
    so it reported the two paths DIFFERENT; it is now an error saying what parity reads."""
    candles = tmp_path / "BTCUSDT-1m-2024-01.csv"
    candles.write_text("1704067200000,1,1,1,1,1,1704067259999,1,1,1,1,0\n")
    with pytest.raises(ConfigurationError, match="is not a recording: parity replays one"):
        parity(candles, lambda: SmaCrossover(3, 10), interval="1m")
