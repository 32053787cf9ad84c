"""The compiled history path gives what the Python path gives, value for value: kline
CSV rows read into columns (the same bars, Decimal digits and exponents included), the SMA
crossover's decisions over the column of closes (the same floating-point averages), and
the equity curve, drawdown and Sharpe ratio; anything the compiled reader does not read
exactly is left to the Python reader, which reports it."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algotrade.adapters import _speedups as compiled
from algotrade.adapters import candles, speedups
from algotrade.adapters.candles import read_candle_bytes, read_candles
from algotrade.adapters.columns import KlineColumns
from algotrade.apps.backtesting import backtest, load_history
from algotrade.domain.backtest import Backtester, max_drawdown
from algotrade.domain.bars import Interval
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed
from algotrade.domain.processing import SymbolPipeline
from algotrade.domain.strategy import EQUAL_WITHIN, EmaCrossover, SmaCrossover

HEADER = "open_time,open,high,low,close,volume,close_time,quote_volume,count,tbv,tbqv,ignore\n"


def rows(prices: list[str], *, micros: bool = False, step_s: int = 60, trades: bool = True) -> str:
    """Kline rows with these closes (open = previous close), Binance's layout."""
    unit = 1_000_000 if micros else 1_000
    start = 1_735_689_600 if micros else 1_704_067_200  # 2025 or 2024
    out = []
    previous = prices[0]
    for i, close in enumerate(prices):
        opened = (start + i * step_s) * unit
        low, high = sorted([Decimal(previous), Decimal(close)])
        tail = f",51234.12,{i % 900},0.5,2100.1,0" if trades else ""
        out.append(f"{opened},{previous},{high},{low},{close},1.234,{opened + step_s * unit - 1}"
                   + tail)  # fmt: skip
        previous = close
    return "\n".join(out) + "\n"


def python_read(data: bytes, name: str = "BTCUSDT-1m-x.csv") -> candles.Candles:
    """Read with the Python reader only."""
    import io

    return candles.read_candle_files([(name, io.StringIO(data.decode()))])


def fast_read(data: bytes, name: str = "BTCUSDT-1m-x.csv") -> candles.Candles | None:
    """Read with the compiled reader only (``None``: it leaves the file to Python)."""
    return candles._columns_of([(name, data)], None, None)


def same_bars(a: list[BarClosed], b: object) -> None:
    """The bars are equal, and so are the texts of their prices (digits and exponent)."""
    built = list(b)  # type: ignore[call-overload]
    assert built == a
    for x, y in zip(a, built, strict=True):
        assert [str(x.open), str(x.high), str(x.low), str(x.close)] == [
            str(y.open), str(y.high), str(y.low), str(y.close)
        ]  # fmt: skip


price = st.builds(
    lambda whole, frac, places: f"{whole}.{str(frac).zfill(places)[:places]}" if places else
    str(whole),
    st.integers(1, 120_000), st.integers(0, 10**8), st.integers(0, 8),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(price, min_size=1, max_size=60), st.booleans(), st.booleans(), st.booleans(),
       st.booleans())  # fmt: skip
def test_columns_are_the_python_readers_bars(
    prices: list[str], header: bool, micros: bool, crlf: bool, trades: bool
) -> None:
    """Any valid file: header or not, ms or µs, CRLF or LF, with or without the trades."""
    text = (HEADER if header else "") + rows(prices, micros=micros, trades=trades)
    if crlf:
        text = text.replace("\n", "\r\n")
    data = text.encode()
    fast = fast_read(data)
    assert fast is not None
    slow = python_read(data)
    assert isinstance(fast.bars, KlineColumns)
    assert (fast.symbol, fast.interval, fast.rows) == (slow.symbol, slow.interval, slow.rows)
    same_bars(list(slow.bars), fast.bars)
    assert list(fast.bars.closes) == [float(b.close) for b in slow.bars]
    assert list(fast.bars.close_times) == [b.close_time for b in slow.bars]


def test_every_split_of_a_file_reads_the_same() -> None:
    """Read in 1 to 8 parts at once (cut at line ends), the columns are the same."""
    rng = random.Random(3)
    prices = [f"{rng.uniform(100, 200):.2f}" for _ in range(3000)]
    data = (HEADER + rows(prices)).encode()
    start = data.find(b"\n") + 1
    one = compiled.scan_klines(data, start, 1, 1)
    assert one is not None
    for threads in range(2, 9):
        assert compiled.scan_klines(data, start, threads, 1) == one, threads


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace(",42000.5,", ", 42000.5,", 1),  # white space: Python strips it
        lambda t: t.replace("42000.5", '"42000.5"', 1),  # quotes
        lambda t: t.replace("42000.5", "4.20005E4", 1),  # an exponent
        lambda t: t.replace("42000.5", "42000.", 1),  # a point and no decimals
        lambda t: t.replace("42000.5", "0", 1),  # not a positive price
        lambda t: t + t.splitlines()[-1] + "\n",  # a duplicate row
        lambda t: t + "garbage\n",  # a malformed row
        lambda t: t.replace("1704067259999", "1704067319999", 1),  # a 2m candle among 1m
        lambda t: t.replace("42000.5", "1" * 19, 1),  # more digits than 64 bits hold
    ],
)
def test_what_it_does_not_read_exactly_is_left_to_python(change: object) -> None:
    """A file with anything unusual is read by the Python reader, with its rejects."""
    base = "1704067200000,42000.5,42001,41999,42000.5,1,1704067259999,5,7\n"
    base += "1704067260000,42000.5,42002,41998,42001.25,1,1704067319999,5,7\n"
    text = change(base)  # type: ignore[operator]
    data = text.encode()
    assert fast_read(data) is None
    via = read_candle_bytes([("BTCUSDT-1m-x.csv", data)])
    assert not isinstance(via.bars, KlineColumns)
    expected = python_read(data)
    assert list(via.bars) == list(expected.bars)
    assert via.rejected == expected.rejected


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.sampled_from(["100", "100.01", "99.99", "100.5", "101", "98", "100.25"]),
             min_size=1, max_size=400),
    st.integers(1, 12), st.integers(2, 40),
)  # fmt: skip
def test_the_kernel_takes_the_strategys_decisions(closes: list[str], short: int, long: int) -> None:
    """Over closes full of ties and flat stretches, the compiled SMA crossover decides on
    the same bars, the same sides and the same averages (bit for bit) as SmaCrossover."""
    if short >= long:
        short, long = long - 1, short + 1
    strategy = SmaCrossover(short, long)
    expected = []
    for index, text in enumerate(closes):
        bar = BarClosed(stream="b", version=1, exchange_ts=0, receive_ts=0, symbol="X",
                        interval="1m", open_time=index, close_time=index + 1,
                        open=Decimal(text), high=Decimal(text), low=Decimal(text),
                        close=Decimal(text), updates=0, last_position=0)  # fmt: skip
        decision = strategy.on_bar(bar)
        if decision is not None:
            side = 1 if decision.side == "BUY" else -1
            expected.append((index, side, decision.short_sma, decision.long_sma))
    from array import array

    found = compiled.sma_crossover(array("d", map(float, closes)), short, long, EQUAL_WITHIN)
    assert found == expected


def test_the_kernel_agrees_over_a_long_random_walk() -> None:
    """200,000 closes: where a running sum's rounding could part the two, they agree."""
    from array import array

    rng = random.Random(11)
    level, closes = 42_000.0, []
    for _ in range(200_000):
        level = max(1.0, level * (1 + rng.gauss(0, 0.001)))
        closes.append(round(level, 2))
    strategy = SmaCrossover(50, 200)
    expected = []
    for index, close in enumerate(closes):
        decision = strategy.update(close)
        if decision is not None:
            expected.append((index, 1 if decision.side == "BUY" else -1))
    found = compiled.sma_crossover(array("d", closes), 50, 200, EQUAL_WITHIN)
    assert [(i, side) for i, side, _, _ in found] == expected
    assert len(expected) > 100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1e-3, 1e9, allow_nan=False, allow_infinity=False), max_size=300),
       st.floats(1.0, 1e6))  # fmt: skip
def test_curve_figures_are_the_python_ones(values: list[float], initial: float) -> None:
    """Drawdown, and the exact sums behind the Sharpe ratio (CPython's fsum, ported)."""
    from array import array

    drawdown, total, squares, lowest = compiled.curve_figures(array("d", values), initial)
    assert drawdown == max_drawdown(values)
    if values:
        returns = [b / a - 1.0 for a, b in itertools.pairwise(values)]
        returns.append(values[0] / initial - 1.0)
        assert total == math.fsum(returns)
        assert squares == math.fsum(r * r for r in returns)
        assert lowest == min(values)


def history_file(tmp_path: Path, count: int = 20_000, seed: int = 5) -> Path:
    """A kline CSV of a random walk in cents (ties between averages happen)."""
    rng = random.Random(seed)
    level, prices = 42_000.0, []
    for _ in range(count):
        level = max(1.0, level * (1 + rng.gauss(0, 0.001)))
        prices.append(f"{level:.2f}")
    path = tmp_path / "BTCUSDT-1m-2024.csv"
    path.write_text(HEADER + rows(prices))
    return path


@pytest.mark.parametrize("quantity", [None, "0.01"])
def test_a_backtest_over_columns_is_the_python_backtest(tmp_path: Path, quantity: str | None
                                                        ) -> None:  # fmt: skip
    """Signals (ids included), trades, equity curve and figures of the compiled path equal
    those of the Python path over the same file, all cash or a fixed quantity."""
    path = history_file(tmp_path)
    columns = load_history(path)
    assert isinstance(columns.items, KlineColumns)
    objects = replace(columns, items=list(columns.items))
    fast = backtest(SmaCrossover(20, 60), columns, quantity=quantity)
    slow = backtest(SmaCrossover(20, 60), objects, quantity=quantity)
    assert fast.signals == slow.signals
    assert fast.trades == slow.trades
    assert list(fast.equity) == list(slow.equity)
    assert list(fast.times) == list(slow.times)
    assert fast.metrics() == slow.metrics()
    assert len(fast.signals) > 50


def test_other_strategies_and_a_warm_up_take_the_python_path(tmp_path: Path) -> None:
    """Another strategy, a subclass of the SMA crossover and a warmed-up run read the same
    columns bar by bar, with the results of the list of bars."""

    class Shifted(SmaCrossover):
        name = "shifted"

    path = history_file(tmp_path, count=3000)
    columns = load_history(path)
    objects = replace(columns, items=cast("list[BarClosed]", list(columns.items)))
    for make in (lambda: EmaCrossover(12, 26), lambda: Shifted(10, 30)):
        assert backtest(make(), columns).metrics() == backtest(make(), objects).metrics()
    warmup = cast("list[BarClosed]", list(load_history(history_file(tmp_path, 500, 9)).items))
    warm = backtest(SmaCrossover(10, 30), columns, warmup=warmup)
    assert warm.signals == backtest(SmaCrossover(10, 30), objects, warmup=warmup).signals


def test_without_the_compiled_module_the_file_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALGOTRADE_SPEEDUPS=0 (or no compiler): the same bars and the same backtest."""
    path = history_file(tmp_path, count=2000)
    fast = read_candles(path)
    monkeypatch.setattr(speedups, "scan_klines", None)
    slow = read_candles(path)
    assert not isinstance(slow.bars, KlineColumns)
    same_bars(list(slow.bars), fast.bars)


def test_a_data_sets_archives_join_into_one_series() -> None:
    """Two files in order join; one that does not start after the other ends is refused."""
    lines = rows(["100", "101", "102", "103", "104", "105", "106"]).splitlines(keepends=True)
    first, second = "".join(lines[:3]).encode(), "".join(lines[3:]).encode()
    parts = cast("list[tuple[Any, ...]]", [compiled.scan_klines(d, 0, 1) for d in (first, second)])
    joined = KlineColumns.joined("BTCUSDT", Interval.parse("1m"), parts)
    assert joined is not None
    assert [str(b.close) for b in joined] == ["100", "101", "102", "103", "104", "105", "106"]
    assert KlineColumns.joined("BTCUSDT", Interval.parse("1m"), parts[::-1]) is None
    assert KlineColumns.joined("BTCUSDT", Interval.parse("5m"), parts) is None
    tester = Backtester(SymbolPipeline("BTCUSDT", Interval.parse("1m"), SmaCrossover(1, 2)))
    tester.run_decided(joined, [])
    with pytest.raises(ConfigurationError, match="runs once"):
        tester.run_decided(joined, [])
