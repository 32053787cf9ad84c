"""Backtest and live reports: price with both SMAs, BUY/SELL markers, the equity curve.

HTML reports are self-contained (inline SVG drawn here, no JavaScript, no network); PNG
reports need matplotlib (``pip install 'algotrade[report]'``). Both draw one marker per
signal: BUY an upward green triangle, SELL a downward red one.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from algotrade.domain.backtest import BacktestResult, max_drawdown
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed, OrderFilled, SignalEmitted
from algotrade.domain.indicators import SimpleMovingAverage
from algotrade.domain.values import Side, decimal_text
from algotrade.services.views import iso

BUY_COLOUR = "#00b050"
SELL_COLOUR = "#e00000"
_WIDTH, _PRICE_H, _EQUITY_H, _PAD = 1000, 360, 200, 56


@dataclass
class Marker:
    """One signal on the price chart."""

    time: int
    price: float
    side: Side
    indicators: tuple[tuple[str, float], ...] = ()
    """The strategy's indicator values at the signal, shown with it."""


@dataclass
class ReportData:
    """Everything a report draws."""

    title: str
    times: list[int]
    closes: list[float]
    markers: list[Marker]
    equity: list[float]
    lines: dict[str, list[float | None]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def _sma_lines(closes: Sequence[float], params: dict[str, Any]) -> dict[str, list[float | None]]:
    lines: dict[str, list[float | None]] = {}
    for name in ("short", "long"):
        period = params.get(name)
        if isinstance(period, int) and period > 0:
            sma = SimpleMovingAverage(period)
            lines[f"SMA({period})"] = [sma.update(c) for c in closes]
    return lines


def from_backtest(result: BacktestResult) -> ReportData:
    """Return what a report of ``result`` draws."""
    closes = [float(b.close) for b in result.closed_bars]
    params = dict(result.params)
    label = ", ".join(f"{k}={v}" for k, v in result.params)
    return ReportData(
        title=f"{result.symbol} {result.interval} {result.strategy}({label}): backtest",
        times=list(result.times),
        closes=closes,
        markers=[
            Marker(s.exchange_ts, float(s.price), s.side, s.indicators) for s in result.signals
        ],
        equity=list(result.equity),
        lines=_sma_lines(closes, params),
        metrics=result.metrics(),
    )


def from_live(
    bars: Sequence[BarClosed],
    signals: Sequence[SignalEmitted],
    fills: Sequence[OrderFilled],
    *,
    initial_cash: Decimal,
    params: dict[str, Any],
    title: str,
) -> ReportData:
    """Return what a report of stored live bars, signals and filled orders draws.

    The equity starts at ``initial_cash`` and follows the stored fills (cash and quantity
    change at each fill's time), marked at each bar's close.
    """
    if not bars:
        raise ConfigurationError("store", "no stored bars to report on")
    closes = [float(b.close) for b in bars]
    ordered = sorted(fills, key=lambda f: f.exchange_ts)
    cash, quantity = float(initial_cash), 0.0
    equity = []
    next_fill = 0
    for bar, close in zip(bars, closes, strict=True):
        while next_fill < len(ordered) and ordered[next_fill].exchange_ts <= bar.exchange_ts:
            fill = ordered[next_fill]
            notional = float(fill.price * fill.quantity)
            if fill.side is Side.BUY:
                cash -= notional + float(fill.fee)
                quantity += float(fill.quantity)
            else:
                cash += notional - float(fill.fee)
                quantity -= float(fill.quantity)
            next_fill += 1
        equity.append(cash + quantity * close)
    initial = float(initial_cash)
    return ReportData(
        title=title,
        times=[b.close_time for b in bars],
        closes=closes,
        markers=[Marker(s.exchange_ts, float(s.price), s.side, s.indicators) for s in signals],
        equity=equity,
        lines=_sma_lines(closes, params),
        metrics={
            "bars": len(bars),
            "signals": len(signals),
            "fills": len(fills),
            "initial_cash": decimal_text(initial_cash),
            "final_equity": round(equity[-1], 8),
            "total_return": round(equity[-1] / initial - 1, 8),
            "max_drawdown": round(max_drawdown(equity), 8),
        },
    )


def write_report(data: ReportData, out: str | Path) -> Path:
    """Write ``data`` as ``.html`` or ``.png`` (by the file's suffix); return the path.

    Raises:
        ConfigurationError: another suffix, or PNG without matplotlib.
    """
    return write_either(out, lambda: render_html(data), lambda path: render_png(data, path))


def write_either(out: str | Path, page: Callable[[], str], picture: Callable[[Path], None]) -> Path:
    """Write the HTML ``page()`` to a ``.html`` file or the ``picture`` to a ``.png``.

    Raises:
        ConfigurationError: another suffix (or what the renderer raises).
    """
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        path.write_text(page(), encoding="utf-8")
    elif suffix == ".png":
        picture(path)
    else:
        raise ConfigurationError("out", f"{path.name}: a report is .html or .png")
    return path


def html_page(title: str, svg: str, figures: dict[str, Any]) -> str:
    """Return a self-contained page: the title, one SVG and a table of the figures."""
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in figures.items()
    )
    escaped = html.escape(title)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escaped}</title>'
        "<style>body{font-family:sans-serif;margin:24px}"
        "table{border-collapse:collapse}th,td{padding:2px 12px;text-align:left}"
        "th{color:#555;font-weight:normal}</style></head><body>"
        f"<h1>{escaped}</h1>{svg}<h2>figures</h2><table>{rows}</table>"
        "</body></html>\n"
    )


# --- HTML ----------------------------------------------------------------------------------


class Scale:
    """A linear map of values onto a vertical pixel range (top to top + height)."""

    def __init__(self, lo: float, hi: float, top: float, height: float) -> None:
        if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
            lo, hi = (lo - 1, hi + 1) if math.isfinite(lo) else (0.0, 1.0)
        self.lo, self.hi, self.top, self.height = lo, hi, top, height

    def __call__(self, value: float) -> float:
        return self.top + self.height - (value - self.lo) / (self.hi - self.lo) * self.height


def decimate(xs: list[float], ys: Sequence[float | None], width: int) -> list[tuple[float, float]]:
    """Keep at most a min and a max per pixel column, so huge series stay small."""
    columns: dict[int, list[tuple[float, float]]] = {}
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            continue
        columns.setdefault(int(x), []).append((x, y))
    out: list[tuple[float, float]] = []
    for points in columns.values():
        if len(points) <= 2:
            out.extend(points)
            continue
        lo = min(points, key=lambda p: p[1])
        hi = max(points, key=lambda p: p[1])
        out.extend(sorted((lo, hi)) if lo is not hi else [lo])
    return out[: width * 4 + 16]


def polyline(points: list[tuple[float, float]], ys: Scale, colour: str, css: str) -> str:
    """Return an SVG polyline of ``points`` (x in pixels, y in values)."""
    if not points:
        return ""
    coords = " ".join(f"{x:.1f},{ys(y):.1f}" for x, y in points)
    return (
        f'<polyline class="{css}" fill="none" stroke="{colour}" stroke-width="1.3" '
        f'points="{coords}"/>'
    )


def axis_labels(ys: Scale, left: float) -> str:
    """Return five labelled grid lines of a scale."""
    out = []
    for i in range(5):
        value = ys.lo + (ys.hi - ys.lo) * i / 4
        y = ys(value)
        out.append(
            f'<text x="{left - 6:.0f}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{value:,.2f}</text>"
            f'<line x1="{left}" x2="{_WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
    return "".join(out)


def render_html(data: ReportData) -> str:
    """Return a self-contained HTML page with the two charts and the figures."""
    n = len(data.times)
    if n == 0:
        raise ConfigurationError("data", "nothing to report: no bars")
    left, right = 90.0, _WIDTH - 10.0
    t0, t1 = data.times[0], data.times[-1]
    span = max(t1 - t0, 1)

    def x_of(t: int) -> float:
        return left + (t - t0) / span * (right - left)

    xs = [x_of(t) for t in data.times]
    values = [v for line in data.lines.values() for v in line if v is not None]
    prices = Scale(min([*data.closes, *values]), max([*data.closes, *values]), 30, _PRICE_H - 60)
    money = Scale(min(data.equity), max(data.equity), _PRICE_H + 30, _EQUITY_H - 50)
    palette = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" '
        f'height="{_PRICE_H + _EQUITY_H}" font-family="sans-serif">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13">price, moving averages and signals</text>',
        axis_labels(prices, left),
        polyline(decimate(xs, data.closes, _WIDTH), prices, "#444", "price"),
    ]
    legend = [("close", "#444")]
    for (name, line), colour in zip(data.lines.items(), palette, strict=False):
        parts.append(polyline(decimate(xs, line, _WIDTH), prices, colour, "indicator"))
        legend.append((name, colour))
    for marker in data.markers:
        x, y = x_of(marker.time), prices(marker.price)
        if marker.side is Side.BUY:
            shape, colour = f"M{x:.1f},{y - 7:.1f} l6,11 l-12,0 z", BUY_COLOUR
        else:
            shape, colour = f"M{x:.1f},{y + 7:.1f} l6,-11 l-12,0 z", SELL_COLOUR
        shown = "".join(f", {html.escape(k)} {v:,.4g}" for k, v in marker.indicators)
        parts.append(
            f'<path class="marker {marker.side.lower()}" d="{shape}" fill="{colour}">'
            f"<title>{marker.side} {marker.price:,.2f} at {iso(marker.time)}{shown}</title></path>"
        )
    for i, (name, colour) in enumerate(legend):
        parts.append(
            f'<text x="{left + 10 + i * 110}" y="{_PRICE_H - 14}" font-size="11" '
            f'fill="{colour}">{html.escape(name)}</text>'
        )
    parts += [
        f'<text x="{left}" y="{_PRICE_H + 18}" font-size="13">equity</text>',
        axis_labels(money, left),
        polyline(decimate(xs, data.equity, _WIDTH), money, "#2ca02c", "equity"),
        f'<text x="{left}" y="{_PRICE_H + _EQUITY_H - 6}" font-size="11">{iso(t0)}</text>',
        f'<text x="{right}" y="{_PRICE_H + _EQUITY_H - 6}" font-size="11" '
        f'text-anchor="end">{iso(t1)}</text>',
        "</svg>",
    ]
    return html_page(data.title, "".join(parts), data.metrics)


# --- PNG -----------------------------------------------------------------------------------


def utc(ts_ns: int) -> datetime:
    """Return a time in ns as an aware UTC datetime (matplotlib's axis)."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` on the file-only Agg backend.

    Raises:
        ConfigurationError: matplotlib is not installed (the ``report`` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigurationError(
            "out", "a PNG report needs matplotlib: pip install 'algotrade[report]' (or use .html)"
        ) from None
    return plt


def render_png(data: ReportData, path: Path) -> None:
    """Draw the report with matplotlib into ``path``."""
    plt = pyplot()
    if not data.times:
        raise ConfigurationError("data", "nothing to report: no bars")
    days = [utc(t) for t in data.times]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    top.plot(days, data.closes, color="#444444", linewidth=0.9, label="close")
    for (name, line), colour in zip(data.lines.items(), ("#1f77b4", "#ff7f0e"), strict=False):
        top.plot(days, [math.nan if v is None else v for v in line], color=colour,
                 linewidth=1.1, label=name)  # fmt: skip
    for side, marker, colour in ((Side.BUY, "^", BUY_COLOUR), (Side.SELL, "v", SELL_COLOUR)):
        chosen = [m for m in data.markers if m.side is side]
        top.scatter([utc(m.time) for m in chosen], [m.price for m in chosen], marker=marker,
                    s=90, color=colour, edgecolors="none", antialiased=False, zorder=3,
                    label=str(side))  # fmt: skip
    top.set_title(data.title)
    top.legend(loc="upper left")
    bottom.plot(days, data.equity, color="#2ca02c", linewidth=1.0)
    bottom.set_ylabel("equity")
    bottom.set_xlabel("UTC")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
