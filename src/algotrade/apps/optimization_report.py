"""The report of an optimisation: a heatmap of the objective over two parameters and, for
a walk-forward, the joined out-of-sample equity curve, as a self-contained HTML page or a
PNG (matplotlib, ``pip install 'algotrade[report]'``).

It reads what ``algotrade optimize --json`` prints. A search's cell is the best value of
the objective over the other parameters (the highest, or the lowest for ``max_drawdown``);
a walk-forward's is the mean of its windows' in-sample values, each window's winner
marked with its number, so that a winner alone in its colour (an island) shows as an
over-fit.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algotrade.apps.optimize import MINIMISED
from algotrade.apps.report import (
    Scale,
    axis_labels,
    decimate,
    html_page,
    polyline,
    pyplot,
    write_either,
)
from algotrade.domain.errors import ConfigurationError
from algotrade.services.views import iso

_WIDTH, _MAP_H, _CURVE_H = 1000, 420, 230


@dataclass
class OptimizationReport:
    """What the report draws."""

    title: str
    objective: str
    x: str
    y: str
    xs: list[Any]
    ys: list[Any]
    cells: dict[tuple[Any, Any], float]
    chosen: list[tuple[Any, Any, str]] = field(default_factory=list)  # x, y, label
    curve: list[tuple[int, float]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def _key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def from_optimization(body: Any, x: str | None = None, y: str | None = None) -> OptimizationReport:
    """Return the report of ``algotrade optimize --json``'s output.

    Raises:
        ConfigurationError: not such an output, or ``x``/``y`` no parameter of it.
    """
    if not isinstance(body, dict) or body.get("kind") not in ("search", "walk_forward"):
        raise ConfigurationError(
            "optimization", "not the output of algotrade optimize --json (no kind)"
        )
    names: list[str] = list(body["parameters"])
    objective: str = body["objective"]
    if body["kind"] == "search":
        runs = [list(body["trials"])]
    else:
        runs = [list(w["in_sample_trials"]) for w in body["windows"]]
    varying = [n for n in names if len({str(r.get(n)) for run in runs for r in run}) > 1]
    chosen_axes = [a for a in (x, y) if a is not None]
    for axis in chosen_axes:
        if axis not in names:
            raise ConfigurationError("x", f"{axis!r} is none of the parameters {names}")
    axes = [*chosen_axes, *[n for n in [*varying, *names] if n not in chosen_axes]]
    if not axes:
        raise ConfigurationError("optimization", "no parameter was searched")
    across, down = axes[0], axes[1] if len(axes) > 1 else ""
    lowest = objective in MINIMISED
    per_run: list[dict[tuple[Any, Any], float]] = []
    for run in runs:
        best: dict[tuple[Any, Any], float] = {}
        for row in run:
            value = row.get(objective)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            cell = (row.get(across), row.get(down) if down else "")
            kept = best.get(cell)
            if kept is None or (value < kept if lowest else value > kept):
                best[cell] = float(value)
        per_run.append(best)
    cells: dict[tuple[Any, Any], float] = {}
    for cell in {c for run in per_run for c in run}:
        values = [run[cell] for run in per_run if cell in run]
        cells[cell] = sum(values) / len(values)
    rows = [r for run in runs for r in run]
    xs = sorted({r.get(across) for r in rows}, key=_key)
    ys = sorted({r.get(down) for r in rows}, key=_key) if down else [""]
    report = OptimizationReport(
        title=f"{body.get('strategy', '')} on {body.get('source', '')}: {objective}",
        objective=objective,
        x=across,
        y=down,
        xs=xs,
        ys=ys,
        cells=cells,
    )
    if body["kind"] == "search":
        best_row = body["best"]
        report.chosen = [(best_row.get(across), best_row.get(down) if down else "", "best")]
        report.figures = {k: best_row.get(k) for k in best_row if k not in names}
        report.title += f", {len(rows)} sets"
    else:
        report.chosen = [
            (w["chosen"].get(across), w["chosen"].get(down) if down else "", str(w["window"]))
            for w in body["windows"]
        ]
        report.curve = [(int(t), float(v)) for t, v in body["curve"]]
        report.figures = dict(body["out_of_sample"])
        report.title += f", walk-forward in {len(body['windows'])} windows"
    return report


def write_optimization_report(report: OptimizationReport, out: str | Path) -> Path:
    """Write the report as ``.html`` or ``.png``; return the path.

    Raises:
        ConfigurationError: another suffix, or PNG without matplotlib.
    """
    return write_either(out, lambda: render_html(report), lambda path: render_png(report, path))


def colour(share: float) -> str:
    """Return the colour of a value at ``share`` (0: worst .. 1: best) of the range: dark
    blue through teal to yellow, as viridis."""
    stops = [(0.0, (68, 1, 84)), (0.5, (33, 145, 140)), (1.0, (253, 231, 37))]
    share = min(max(share, 0.0), 1.0)
    for (a, ca), (b, cb) in itertools.pairwise(stops):
        if share <= b:
            t = (share - a) / (b - a)
            r, g, bl = (round(u + (v - u) * t) for u, v in zip(ca, cb, strict=True))
            return f"#{r:02x}{g:02x}{bl:02x}"
    return "#fde725"


def _share(report: OptimizationReport, value: float) -> float:
    lo, hi = min(report.cells.values()), max(report.cells.values())
    share = 0.5 if hi <= lo else (value - lo) / (hi - lo)
    return 1 - share if report.objective in MINIMISED else share


def render_html(report: OptimizationReport) -> str:
    """Return a self-contained HTML page: the heatmap, the curve, the figures."""
    if not report.cells:
        raise ConfigurationError("optimization", "no set has a value of the objective")
    left, top, right = 90.0, 40.0, _WIDTH - 120.0
    bottom = _MAP_H - 50.0
    width = (right - left) / len(report.xs)
    height = (bottom - top) / len(report.ys)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" '
        f'height="{_MAP_H + (_CURVE_H if report.curve else 0)}" font-family="sans-serif">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="20" font-size="13">{html.escape(report.objective)} by '
        f"{html.escape(report.x)}"
        + (f" and {html.escape(report.y)}" if report.y else "")
        + "</text>",
    ]
    for j, yv in enumerate(report.ys):
        row_top = bottom - (j + 1) * height  # the first value at the bottom
        parts.append(
            f'<text x="{left - 6}" y="{row_top + height / 2 + 4:.1f}" '
            f'text-anchor="end" font-size="10">{html.escape(str(yv))}</text>'
        )
        for i, xv in enumerate(report.xs):
            value = report.cells.get((xv, yv))
            x0 = left + i * width
            fill = "#eeeeee" if value is None else colour(_share(report, value))
            label = "no value" if value is None else f"{value:.6g}"
            parts.append(
                f'<rect class="cell" x="{x0:.1f}" y="{row_top:.1f}" width="{width:.1f}" '
                f'height="{height:.1f}" fill="{fill}"><title>{html.escape(report.x)}={xv}'
                + (f", {html.escape(report.y)}={yv}" if report.y else "")
                + f": {label}</title></rect>"
            )
    step = max(1, len(report.xs) // 20)
    for i, xv in enumerate(report.xs):
        if i % step == 0:
            parts.append(
                f'<text x="{left + (i + 0.5) * width:.1f}" y="{bottom + 14}" '
                f'text-anchor="middle" font-size="10">{html.escape(str(xv))}</text>'
            )
    parts.append(
        f'<text x="{(left + right) / 2}" y="{bottom + 32}" text-anchor="middle" '
        f'font-size="11">{html.escape(report.x)}</text>'
    )
    if report.y:
        parts.append(
            f'<text x="14" y="{(top + bottom) / 2}" font-size="11" '
            f'transform="rotate(-90 14 {(top + bottom) / 2})">'
            f"{html.escape(report.y)}</text>"
        )
    for xv, yv, label in report.chosen:
        if xv in report.xs and yv in report.ys:
            cx = left + (report.xs.index(xv) + 0.5) * width
            cy = bottom - (report.ys.index(yv) + 0.5) * height
            parts.append(
                f'<circle class="chosen" cx="{cx:.1f}" cy="{cy:.1f}" '
                f'r="{min(width, height) / 3:.1f}" '
                f'fill="none" stroke="#e00000" stroke-width="2"><title>{html.escape(label)}'
                f"</title></circle>"
                f'<text x="{cx:.1f}" y="{cy + 4:.1f}" text-anchor="middle" font-size="10" '
                f'fill="#e00000">{html.escape(label if label != "best" else "*")}</text>'
            )
    lo, hi = min(report.cells.values()), max(report.cells.values())
    for k in range(11):
        share = k / 10
        value = lo + (hi - lo) * share
        parts.append(
            f'<rect x="{right + 30}" y="{bottom - (k + 1) * (bottom - top) / 11:.1f}" '
            f'width="16" height="{(bottom - top) / 11:.1f}" '
            f'fill="{colour(_share(report, value))}"/>'
            f'<text x="{right + 50}" y="{bottom - (k + 0.5) * (bottom - top) / 11 + 4:.1f}" '
            f'font-size="9">{value:.4g}</text>'
        )
    if report.curve:
        parts.append(_curve_svg(report.curve, left))
    parts.append("</svg>")
    return html_page(report.title, "".join(parts), report.figures)


def _curve_svg(curve: Sequence[tuple[int, float]], left: float) -> str:
    right = _WIDTH - 10.0
    t0, t1 = curve[0][0], curve[-1][0]
    span = max(t1 - t0, 1)
    xs = [left + (t - t0) / span * (right - left) for t, _ in curve]
    values = [v for _, v in curve]
    money = Scale(min(values), max(values), _MAP_H + 30, _CURVE_H - 50)
    return "".join(
        [
            f'<text x="{left}" y="{_MAP_H + 18}" font-size="13">walk-forward equity, out of '
            "sample</text>",
            axis_labels(money, left),
            polyline(decimate(xs, values, _WIDTH), money, "#2ca02c", "equity"),
            f'<text x="{left}" y="{_MAP_H + _CURVE_H - 6}" font-size="11">{iso(t0)}</text>',
            f'<text x="{right}" y="{_MAP_H + _CURVE_H - 6}" font-size="11" '
            f'text-anchor="end">{iso(t1)}</text>',
        ]
    )


def render_png(report: OptimizationReport, path: Path) -> None:
    """Draw the report with matplotlib into ``path``."""
    plt = pyplot()
    if not report.cells:
        raise ConfigurationError("optimization", "no set has a value of the objective")
    rows = 2 if report.curve else 1
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(11, 8 if report.curve else 5.5),
        squeeze=False,
        gridspec_kw={"height_ratios": [2, 1] if report.curve else [1]},
    )
    heat = axes[0][0]
    grid = [[report.cells.get((xv, yv), math.nan) for xv in report.xs] for yv in report.ys]
    cmap = "viridis_r" if report.objective in MINIMISED else "viridis"
    image = heat.imshow(grid, origin="lower", aspect="auto", cmap=cmap)
    heat.set_xticks(range(len(report.xs)), [str(v) for v in report.xs], fontsize=8)
    heat.set_yticks(range(len(report.ys)), [str(v) for v in report.ys], fontsize=8)
    heat.set_xlabel(report.x)
    if report.y:
        heat.set_ylabel(report.y)
    for xv, yv, label in report.chosen:
        if xv in report.xs and yv in report.ys:
            i, j = report.xs.index(xv), report.ys.index(yv)
            heat.scatter([i], [j], s=140, facecolors="none", edgecolors="#e00000", linewidths=2)
            heat.annotate(
                label if label != "best" else "*",
                (i, j),
                ha="center",
                va="center",
                color="#e00000",
                fontsize=8,
            )
    fig.colorbar(image, ax=heat, label=report.objective)
    heat.set_title(report.title, fontsize=10)
    if report.curve:
        from datetime import UTC, datetime

        line = axes[1][0]
        line.plot(
            [datetime.fromtimestamp(t / 1e9, tz=UTC) for t, _ in report.curve],
            [v for _, v in report.curve],
            color="#2ca02c",
            linewidth=1.0,
        )
        line.set_ylabel("equity, out of sample")
        line.set_xlabel("UTC")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
