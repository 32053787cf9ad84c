"""`algotrade report --optimization`: the heatmap of a search's objective (the best over
the other parameters), a walk-forward's mean in-sample heatmap with each window's winner
and its joined out-of-sample equity, as self-contained HTML and as PNG."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from algotrade.apps.cli import app
from algotrade.apps.logs import configure_logging
from algotrade.apps.optimization_report import from_optimization

SEARCH = ["optimize", "--synthetic", "--bars", "2000", "--param", "short=5..25:10",
          "--param", "long=30..70:20", "--constraint", "short < long", "--jobs", "1",
          "--json"]  # fmt: skip


def invoke(args: list[str]) -> Result:
    """Run the CLI in-process; restore logging to stderr after."""
    try:
        return CliRunner().invoke(app, args)
    finally:
        configure_logging(sys.stderr)  # a command logs into the runner's stream, closed after


def optimised(tmp_path: Path, *extra: str) -> tuple[Path, Any]:
    """Run the search (or, with ``extra``, its walk-forward) and keep its JSON."""
    done = invoke([*SEARCH, *extra])
    assert done.exit_code == 0, done.output
    path = tmp_path / "optimisation.json"
    path.write_text(done.stdout)
    return path, json.loads(done.stdout)


def cells(page: str) -> dict[str, str]:
    """Return each heatmap cell's title (its parameters) -> its value text."""
    found = re.findall(r'<rect class="cell"[^>]*><title>([^<]*): ([^<]*)</title>', page)
    return dict(found)


def test_a_search_report_shows_each_cell_best_of_the_other_parameters(tmp_path: Path) -> None:
    """One cell per (short, long); each the objective of that set; the best set marked;
    nothing loaded from elsewhere (no script, no link)."""
    source, body = optimised(tmp_path)
    out = tmp_path / "search.html"
    done = invoke(["report", "--optimization", str(source), "--out", str(out)])
    assert done.exit_code == 0, done.output
    page = out.read_text()
    shown = cells(page)
    assert len(shown) == 3 * 3  # 5, 15, 25 by 30, 50, 70
    for row in body["trials"]:
        key = f"short={row['short']}, long={row['long']}"
        assert shown[key] == f"{row['sharpe']:.6g}"
    assert page.count('class="chosen"') == 1
    assert "<script" not in page
    assert not re.search(r'(src|href)="https?:', page)


def test_a_walk_forward_report_has_its_windows_and_its_equity(tmp_path: Path) -> None:
    """The mean in-sample value of each cell over the windows, each window's winner by its
    number, the joined out-of-sample curve; the PNG is written too."""
    source, body = optimised(tmp_path, "--walk-forward", "3")
    out = tmp_path / "walk.html"
    done = invoke(["report", "--optimization", str(source), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "bars of walk-forward equity" in done.stdout
    page = out.read_text()
    shown = cells(page)
    values: dict[str, list[float]] = {}
    for window in body["windows"]:
        for row in window["in_sample_trials"]:
            if row["sharpe"] is not None:
                values.setdefault(f"short={row['short']}, long={row['long']}", []).append(
                    row["sharpe"]
                )
    for key, found in values.items():
        assert shown[key] == f"{sum(found) / len(found):.6g}"
    labels = re.findall(r'class="chosen"[^>]*><title>([^<]*)</title>', page)
    assert labels == ["1", "2", "3"]
    assert 'class="equity"' in page
    report = from_optimization(body)
    assert len(report.curve) == len(body["curve"])
    png = tmp_path / "walk.png"
    done = invoke(["report", "--optimization", str(source), "--out", str(png)])
    assert done.exit_code == 0, done.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("body", "extra", "says"),
    [
        ({"metrics": {}}, [], "not the output of algotrade optimize --json"),
        (None, ["--x", "period"], "'period' is none of the parameters"),
    ],
)
def test_a_bad_optimisation_file_exits_2(
    tmp_path: Path, body: Any, extra: list[str], says: str
) -> None:
    """Another JSON, or an axis that is no parameter, exits 2 naming it."""
    if body is None:
        source, _ = optimised(tmp_path)
    else:
        source = tmp_path / "other.json"
        source.write_text(json.dumps(body))
    done = invoke(["report", "--optimization", str(source), "--out", str(tmp_path / "r.html"),
                   *extra])  # fmt: skip
    assert done.exit_code == 2, done.output
    assert says in done.stderr
