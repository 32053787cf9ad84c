"""Backtests: crossovers against an independent numpy/pandas reference, the figures, the
kline CSV reader, and the reports."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algotrade import (
    BarClosed,
    ExponentialMovingAverage,
    Side,
    SmaCrossover,
    backtest,
    read_candles,
)
from algotrade.adapters.synthetic import synthetic_bars
from algotrade.apps.report import from_backtest, render_html, write_report
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.streams import bar_stream

DAY = 86_400 * 10**9
START = 1_704_067_200 * 10**9


def bars_of(closes: Sequence[float | str], interval_ns: int = DAY) -> list[BarClosed]:
    """Daily bars with the given closes (open = high = low = close)."""
    out = []
    for i, c in enumerate(closes):
        price = Decimal(str(c))
        open_time = START + i * interval_ns
        out.append(
            BarClosed(
                stream=bar_stream("BTCUSDT", "1d"), version=i + 1,
                exchange_ts=open_time + interval_ns, receive_ts=open_time + interval_ns,
                symbol="BTCUSDT", interval="1d", open_time=open_time,
                close_time=open_time + interval_ns, open=price, high=price, low=price,
                close=price, updates=1, last_position=0,
            )
        )  # fmt: skip
    return out


def reference_crossovers(closes: Sequence[float], short: int, long: int) -> list[tuple[int, str]]:
    """The straightforward way: pandas rolling means, then the sign of their difference.

    A crossover is a change of sign against the last non-zero sign; the first sign only
    sets it; differences within 1e-12 of the long mean are zero (floating noise).
    """
    series = pd.Series(np.asarray(closes, dtype=float))
    fast = series.rolling(short).mean().to_numpy()
    slow = series.rolling(long).mean().to_numpy()
    diff = fast - slow
    sign = np.where(diff > 1e-12 * slow, 1, np.where(diff < -1e-12 * slow, -1, 0))
    out: list[tuple[int, str]] = []
    last = 0
    for i in range(long - 1, len(closes)):
        s = int(sign[i])
        if s == 0 or s == last:
            continue
        if last != 0:
            out.append((i, "BUY" if s > 0 else "SELL"))
        last = s
    return out


def crossovers(closes: Sequence[float | str], short: int, long: int) -> list[tuple[int, str]]:
    """The signals of a backtest, as (bar index, side)."""
    bars = bars_of(closes)
    index = {b.open_time: i for i, b in enumerate(bars)}
    result = backtest(SmaCrossover(short, long), bars)
    return [(index[s.bar_time], str(s.side)) for s in result.signals]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=400), min_size=30, max_size=300),
    st.integers(min_value=2, max_value=8),
    st.integers(min_value=1, max_value=12),
)
def test_crossovers_match_pandas_on_random_series(steps: list[int], short: int, extra: int) -> None:
    """Random prices (cents, so strings are exact): the same bars and sides as pandas."""
    closes = [1000 + s / 100 for s in steps]
    long = short + extra
    assert crossovers(closes, short, long) == reference_crossovers(closes, short, long)


ADVERSARIAL = {
    "flat": [100.0] * 300,
    "flat stretches between moves": [100.0] * 60 + [101.0] * 60 + [100.0] * 60 + [99.5] * 60,
    "single-bar spikes": [100.0 if i % 37 else 250.0 for i in range(400)],
    "single-bar dips": [100.0 if i % 41 else 1.0 for i in range(400)],
    "equal averages then a move": [50.0] * 100 + [50.0 + (i % 2) for i in range(100)],
    "sawtooth": [100.0 + (i % 20) for i in range(500)],
    "decimals that do not add up in binary": [0.1, 0.2, 0.3] * 150,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_crossovers_match_pandas_on_adversarial_series(name: str) -> None:
    """Equal SMAs, flat stretches and single-bar spikes: still the reference's signals."""
    closes = ADVERSARIAL[name]
    for short, long in ((3, 7), (5, 20), (10, 30)):
        assert crossovers(closes, short, long) == reference_crossovers(closes, short, long)


def test_crossovers_match_pandas_on_a_long_walk() -> None:
    """Ten thousand synthetic daily bars with 50/200: dozens of signals, all the same."""
    bars = list(synthetic_bars(10_000, seed=3))
    closes = [float(b.close) for b in bars]
    expected = reference_crossovers(closes, 50, 200)
    assert len(expected) > 20
    result = backtest(SmaCrossover(50, 200), bars)
    index = {b.open_time: i for i, b in enumerate(bars)}
    assert [(index[s.bar_time], str(s.side)) for s in result.signals] == expected


def test_ema_matches_numpy_reference() -> None:
    """EMA seeded with the SMA of the first period, then alpha = 2 / (period + 1)."""
    rng = random.Random(5)
    values = [100 + rng.gauss(0, 3) for _ in range(500)]
    period = 20
    alpha = 2 / (period + 1)
    expected = [float(np.mean(values[:period]))]
    for v in values[period:]:
        expected.append(expected[-1] + alpha * (v - expected[-1]))
    ema = ExponentialMovingAverage(period)
    got = [x for x in (ema.update(v) for v in values) if x is not None]
    assert got == pytest.approx(expected, rel=1e-12)
    assert ema.ready
    assert ema.value == got[-1]


def test_figures_of_a_hand_worked_round_trip() -> None:
    """Buy at 110 after a rise, sell at 90 after a fall: every figure by hand."""
    closes = [100, 100, 100, 110, 110, 90, 90]
    result = backtest(
        SmaCrossover(1, 2), bars_of(closes), fee=Decimal("0.01"), initial_cash=Decimal(1000)
    )
    # SMA(1) vs SMA(2): bar 1 equal; bar 3 rises (sign set: first sign only sets it)...
    assert [str(s.side) for s in result.signals] == ["SELL"]  # 110 -> 90 crosses below
    closes = [100, 90, 90, 110, 110, 90, 90]
    result = backtest(
        SmaCrossover(1, 2), bars_of(closes), fee=Decimal("0.01"), initial_cash=Decimal(1000)
    )
    assert [str(s.side) for s in result.signals] == ["BUY", "SELL"]
    buy, sell = result.trades
    assert buy.side is Side.BUY
    assert buy.price == 110
    assert sell.price == 90
    quantity = (Decimal(1000) / (Decimal(110) * Decimal("1.01"))).quantize(
        Decimal("1e-8"), "ROUND_DOWN"
    )
    assert buy.quantity == sell.quantity == quantity
    assert buy.fee == Decimal(110) * quantity * Decimal("0.01")
    assert sell.pnl == (90 - 110) * quantity - buy.fee - sell.fee
    cash = Decimal(1000) - 110 * quantity - buy.fee + 90 * quantity - sell.fee
    assert result.final_equity == pytest.approx(float(cash))
    assert result.total_return == pytest.approx(float(cash) / 1000 - 1)
    assert result.win_rate == 0.0
    assert result.round_trips == 1
    assert result.number_of_trades == 2
    assert result.fees_paid == buy.fee + sell.fee
    peak = 1000.0  # the initial cash: the equity never rose above it
    assert result.max_drawdown == pytest.approx((peak - float(cash)) / peak)
    assert result.equity[0] == 1000
    assert len(result.equity) == len(closes)
    assert result.sharpe is not None
    assert result.sharpe < 0
    assert result.rejected_orders == 0
    assert result.open_quantity == 0
    figures = result.metrics()  # what `algotrade backtest` prints: plain decimals, no 0E-8
    assert figures["open_quantity"] == "0.00000000"
    assert figures["fees_paid"] == f"{buy.fee + sell.fee:f}"
    assert "E" not in figures["fees_paid"]


def test_a_sell_while_flat_is_rejected_like_the_trader_does() -> None:
    """The first crossover can be a SELL with nothing to sell: one rejected order."""
    result = backtest(SmaCrossover(1, 2), bars_of([100, 110, 110, 90, 90, 120]))
    assert [str(s.side) for s in result.signals] == ["SELL", "BUY"]
    assert result.rejected_orders == 1
    assert len(result.trades) == 1
    assert result.open_quantity > 0


def test_signal_ids_are_deterministic_and_those_of_the_live_pipeline() -> None:
    """Two backtests of the same bars give the same ids; they derive from the bar."""
    bars = list(synthetic_bars(2000, seed=9))
    first = backtest(SmaCrossover(20, 60), bars)
    second = backtest(SmaCrossover(20, 60), bars)
    assert [s.signal_id for s in first.signals] == [s.signal_id for s in second.signals]
    assert len({s.signal_id for s in first.signals}) == len(first.signals) > 0


# --- candles -------------------------------------------------------------------------------

HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore\n"
)


def kline_rows(count: int, *, micros: bool = False, size_ms: int = 3_600_000) -> list[str]:
    unit = 1000 if micros else 1
    rows = []
    for i in range(count):
        open_ms = 1_704_067_200_000 + i * size_ms
        close = 42_000 + (i % 7) * 10
        rows.append(
            f"{open_ms * unit},{close - 5}.00,{close + 20}.00,{close - 20}.00,{close}.00,"
            f"12.5,{(open_ms + size_ms - 1) * unit + (unit - 1)},525000.0,{100 + i},6.1,"
            "256000.0,0"
        )
    return rows


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("micros", [False, True])
def test_candles_with_or_without_header_in_either_unit(
    tmp_path: Path, header: bool, micros: bool
) -> None:
    """The same candles read the same whatever the header and the timestamp unit."""
    path = tmp_path / "BTCUSDT-1h-2024-01.csv"
    path.write_text((HEADER if header else "") + "\n".join(kline_rows(48, micros=micros)) + "\n")
    candles = read_candles(path)
    assert candles.symbol == "BTCUSDT"
    assert candles.interval.name == "1h"
    assert len(candles.bars) == 48
    assert not candles.rejected
    first = candles.bars[0]
    assert first.open_time == 1_704_067_200 * 10**9
    assert first.close_time - first.open_time == 3_600 * 10**9
    assert first.close == Decimal("42000.00")
    assert first.updates == 100


def test_malformed_candle_rows_are_reported_with_their_line_numbers(tmp_path: Path) -> None:
    """Each bad row is skipped and named by its line; the good rows around it are kept."""
    rows = kline_rows(10)
    rows[2] = "not,a,kline"
    rows[4] = rows[4].replace("42040.00", "abc", 1)
    rows[6] = rows[5]  # a duplicate
    rows[8] = rows[8].replace(",12.5,", ",12.5,").replace("42010.00", "-3", 1)
    path = tmp_path / "data.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    candles = read_candles(path)
    lines = {r.where: r.reason for r in candles.rejected}
    assert set(lines) == {"line 4", "line 6", "line 8", "line 10"}, lines
    assert "at least 7 fields" in lines["line 4"]
    assert "not after the previous candle" in lines["line 8"]
    assert len(candles.bars) == 6


def test_a_file_without_any_candle_is_a_clear_error(tmp_path: Path) -> None:
    """A candle file without one valid candle is a configuration error naming the bad line."""
    path = tmp_path / "empty.csv"
    path.write_text(HEADER + "garbage\n")
    with pytest.raises(ConfigurationError, match=r"no valid candle.*line 2"):
        read_candles(path)


def test_candles_resample_into_a_multiple_interval(tmp_path: Path) -> None:
    """48 hourly candles make two daily bars: first open, extreme high/low, last close."""
    path = tmp_path / "BTCUSDT-1h-2024-01.csv"
    path.write_text("\n".join(kline_rows(48)) + "\n")
    result = backtest(SmaCrossover(1, 2), path, interval="1d")
    assert result.interval == "1d"
    assert result.bars == 2
    day = result.closed_bars[0]
    hourly = read_candles(path).bars[:24]
    assert day.open == hourly[0].open
    assert day.close == hourly[-1].close
    assert day.high == max(b.high for b in hourly)
    assert day.low == min(b.low for b in hourly)
    with pytest.raises(ConfigurationError, match="multiple"):
        backtest(SmaCrossover(1, 2), path, interval="90m")


# --- reports -------------------------------------------------------------------------------


def test_html_report_is_valid_and_draws_one_marker_per_signal(tmp_path: Path) -> None:
    """The HTML report is valid HTML and draws one marker per signal."""
    result = backtest(SmaCrossover(20, 60), list(synthetic_bars(3000, seed=4)))
    assert len(result.signals) > 5
    path = write_report(from_backtest(result), tmp_path / "report.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    svg = re.search(r"<svg.*?</svg>", text, re.DOTALL)
    assert svg is not None
    root = ET.fromstring(svg.group(0))  # well-formed XML, or this raises
    paths = root.findall("{http://www.w3.org/2000/svg}path")
    buys = [p for p in paths if p.get("class") == "marker buy"]
    sells = [p for p in paths if p.get("class") == "marker sell"]
    assert len(buys) == sum(s.side is Side.BUY for s in result.signals)
    assert len(sells) == sum(s.side is Side.SELL for s in result.signals)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert {p.get("class") for p in lines} == {"price", "indicator", "equity"}
    assert "max_drawdown" in text
    assert "sharpe" in text


def _blobs(mask: np.ndarray) -> int:
    """Count 8-connected regions of true pixels."""
    seen = np.zeros_like(mask, dtype=bool)
    count = 0
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        count += 1
        stack = [(y, x)]
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if (0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1]
                            and mask[ny, nx] and not seen[ny, nx]):  # fmt: skip
                        seen[ny, nx] = True
                        stack.append((ny, nx))
    return count


def test_png_report_is_a_png_showing_every_marker(tmp_path: Path) -> None:
    """The PNG decodes, and its pure green and red regions are the BUY and SELL markers."""
    import matplotlib.image

    closes = [100.0] * 30
    for cycle in range(4):  # four well separated rises and falls: 4 BUYs, 4 SELLs
        closes += [100.0 + 30 * (i + 1) / 30 for i in range(30)] + [130.0] * 30
        closes += [130.0 - 30 * (i + 1) / 30 for i in range(30)] + [100.0] * 30
        del cycle
    result = backtest(SmaCrossover(5, 20), bars_of(closes))
    sides = [str(s.side) for s in result.signals]
    path = write_report(from_backtest(result), tmp_path / "report.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = (matplotlib.image.imread(path)[:, :, :3] * 255).round().astype(int)
    green = np.all(pixels == (0x00, 0xB0, 0x50), axis=2)
    red = np.all(pixels == (0xE0, 0x00, 0x00), axis=2)
    legend = 1  # the legend shows one marker of each
    assert _blobs(green) == sides.count("BUY") + legend
    assert _blobs(red) == sides.count("SELL") + legend


def test_a_report_needs_html_or_png(tmp_path: Path) -> None:
    """A report asked for in another format than .html or .png is a configuration error."""
    result = backtest(SmaCrossover(1, 2), bars_of([1, 2, 3]))
    with pytest.raises(ConfigurationError, match=r"\.html or \.png"):
        write_report(from_backtest(result), tmp_path / "report.pdf")
    assert "<svg" in render_html(from_backtest(result))


def test_figures_from_the_shortened_curve_equal_those_of_the_whole_curve() -> None:
    """Drawdown and Sharpe skip flat stretches; computed on every bar they are the same."""
    from algotrade.domain.backtest import max_drawdown, sharpe_ratio

    result = backtest(SmaCrossover(10, 40), list(synthetic_bars(5000, seed=11)))
    assert result.round_trips > 10
    equity = list(result.equity)
    assert result.max_drawdown == max_drawdown(equity)
    whole = sharpe_ratio(equity, DAY, float(result.initial_cash))
    assert result.sharpe == pytest.approx(whole, rel=1e-9)
