"""The processor core: deterministic signal ids, and restart from stored bars."""

from __future__ import annotations

from algotrade.domain.bars import Interval
from algotrade.domain.events import SignalEmitted
from algotrade.domain.processing import SymbolPipeline
from algotrade.domain.strategy import SmaCrossover
from tests.support.builders import bar

PRICES = [10, 9, 8, 7, 6, 7, 8, 9, 10, 11, 12, 11, 10, 9, 8, 7, 6, 5, 6, 7, 8, 9, 10, 11]


def run_bars(pipeline: SymbolPipeline, closes: list[int]) -> list[SignalEmitted]:
    """Feed bars and return the signals."""
    return [s for i, c in enumerate(closes) if (s := pipeline.on_bar(bar(c, i))) is not None]


def new_pipeline() -> SymbolPipeline:
    """Return a 2/4 crossover pipeline on one-minute bars."""
    return SymbolPipeline("BTCUSDT", Interval.parse("1m"), SmaCrossover(2, 4))


def test_same_bars_give_same_signal_ids() -> None:
    """Two pipelines over the same bars produce identical signals, ids included."""
    a = run_bars(new_pipeline(), PRICES)
    b = run_bars(new_pipeline(), PRICES)
    assert len(a) >= 3
    assert a == b
    assert len({s.signal_id for s in a}) == len(a)
    assert [s.version for s in a] == list(range(1, len(a) + 1))


def test_restore_rederives_the_same_signals_and_continues() -> None:
    """A pipeline restored from the first bars continues exactly like an uninterrupted one."""
    whole = run_bars(new_pipeline(), PRICES)
    restored = new_pipeline()
    first_bars = [bar(c, i) for i, c in enumerate(PRICES[:12])]
    replayed = restored.restore(first_bars)
    rest = [
        s
        for i, c in enumerate(PRICES[12:], start=12)
        if (s := restored.on_bar(bar(c, i))) is not None
    ]
    assert replayed + rest == whole
    assert restored.resume_position == first_bars[-1].last_position


def test_signal_carries_bar_and_parameters() -> None:
    """A signal names the bar that closed the crossover and the strategy parameters."""
    signal = run_bars(new_pipeline(), PRICES)[0]
    assert signal.params == (("short", 2), ("long", 4))
    assert signal.strategy == "sma_crossover"
    assert signal.bar_time % 60_000_000_000 == 0
    assert signal.stream == "signals-BTCUSDT-1m-sma_crossover-2-4"
