"""The listing commands on a store larger than a page: every event once, in order."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.apps import cli
from algotrade.apps.logs import configure_logging
from algotrade.domain.events import BookSnapshotTaken, DepthDiffReceived, Event
from algotrade.domain.streams import depth_stream
from algotrade.services.views import depth_view
from tests.support.builders import diff, snapshot


def _store(path: Path) -> list[dict[str, object]]:
    """Store depth of two symbols, interleaved, in several appends; return the BTCUSDT rows
    as `depth --json` must list them."""
    events: list[Event] = [snapshot(100, symbol="BTCUSDT"), snapshot(500, symbol="ETHUSDT")]
    for i in range(1, 12):
        events.append(diff(100 + i, 100 + i, [("99", str(i))], symbol="BTCUSDT", ts=i * 10**8))
        events.append(diff(500 + i, 500 + i, [("9", str(i))], symbol="ETHUSDT", ts=i * 10**8))

    async def main() -> list[dict[str, object]]:
        store = SqliteEventStore(path)
        try:
            for start in range(0, len(events), 5):
                await store.append(events[start : start + 5])
            stored = await store.read_stream(depth_stream("BTCUSDT"))
        finally:
            await store.close()
        return [
            depth_view(e) for e in stored if isinstance(e, DepthDiffReceived | BookSnapshotTaken)
        ]

    return anyio.run(main)


@pytest.mark.parametrize("page", [1, 3, 2000])
def test_depth_lists_every_event_of_the_symbol_page_by_page(
    page: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`algotrade depth` writes as it reads, a page at a time (a week of depth did not fit
    in memory: 1.36 GB for 145,000 events, now 117 MB), with the same output; a symbol
    with no depth (a typo listed an empty table) is named on stderr with those that have it."""
    db = tmp_path / "depth.db"
    expected = _store(db)
    assert len(expected) == 12
    monkeypatch.setattr(cli.listings, "LISTING_PAGE", page)
    try:
        listed = CliRunner().invoke(cli.app, ["depth", "--store", str(db), "--json"])
        table = CliRunner().invoke(cli.app, ["depth", "--store", str(db)])
        empty = CliRunner().invoke(
            cli.app, ["depth", "--store", str(db), "--symbol", "DOTUSDT", "--json"]
        )
    finally:
        configure_logging(sys.stderr)  # a command logs into the runner's stream, closed after
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == expected
    assert json.loads(empty.stdout) == []
    assert "no depth events for DOTUSDT; symbols with depth: BTCUSDT, ETHUSDT" in empty.stderr
    assert "no depth events" not in listed.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "kind",
        "first_update_id",
        "final_update_id",
        "event_time",
        "best_bid",
        "best_ask",
    ]
    assert [line.split()[1] for line in lines[1:-1]] == [
        str(r["first_update_id"]) for r in expected
    ]
    assert lines[-1] == "12 depth event(s)"


@pytest.mark.parametrize(
    "args",
    [
        ["depth"], ["depth", "--json"], ["gaps"], ["signals", "--json"], ["orders"],
        ["positions"], ["trader", "--halt"], ["report", "--out", "{tmp}/r.html"],
        ["backtest", "--data"],
    ],
)  # fmt: skip
def test_a_command_reading_a_store_that_is_not_there_says_so_and_creates_nothing(
    args: list[str], tmp_path: Path
) -> None:
    """A mistyped --store listed nothing ("0 depth event(s)") and left a new empty store
    (and its directories) behind; `trader --halt` halted no trader while it said it did."""
    missing = tmp_path / "typo" / "algotrade.db"
    given = [a.format(tmp=tmp_path) for a in args]
    given += [str(missing)] if given[-1] == "--data" else ["--store", str(missing)]
    try:
        result = CliRunner().invoke(cli.app, given)
    finally:
        configure_logging(sys.stderr)  # a command logs into the runner's stream, closed after
    assert result.exit_code == 2, result.output
    option = "--data" if "--data" in given else "--store"
    assert result.output.startswith(f"algotrade: error: {option}")
    assert f"no store at '{missing}' (nothing was created)" in result.output
    assert not (tmp_path / "typo").exists()
