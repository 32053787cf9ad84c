"""Parity: a recording through the live services' path and through backtest give the same
signals, ids included, for every symbol and both price sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from algotrade import ConfigurationError, SmaCrossover, parity


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


def test_parity_needs_a_recording(tmp_path: Path) -> None:
    """A kline file (or a store) used to run: no live signal from lines that are not frames,
    so it reported the two paths DIFFERENT; it is now an error saying what parity reads."""
    candles = tmp_path / "BTCUSDT-1m-2024-01.csv"
    candles.write_text("1704067200000,1,1,1,1,1,1704067259999,1,1,1,1,0\n")
    with pytest.raises(ConfigurationError, match="is not a recording: parity replays one"):
        parity(candles, lambda: SmaCrossover(3, 10), interval="1m")
