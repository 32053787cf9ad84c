"""Each command tunes the garbage collector for what it is judged on: bulk market data
(throughput) or the signal path (the pause a signal may wait for)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from algotrade.adapters.codec import gc_paused
from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.apps import cli
from algotrade.apps.common import LATENCY_GC, THROUGHPUT_GC, tune_gc
from tests.support.builders import diff


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_bulk_services_collect_rarely_and_signal_services_keep_pythons_thresholds(
    restored_gc: None,
) -> None:
    """The bulk commands raise the collector's thresholds; the services signals pass through keep
    Python's."""
    tune_gc()
    assert gc.get_threshold() == THROUGHPUT_GC
    tune_gc(latency=True)
    assert gc.get_threshold() == LATENCY_GC == (700, 10, 10)  # Python's own, as documented


@pytest.mark.parametrize(
    ("command", "latency"),
    [("processor", True), ("trader", True), ("collector", False), ("run", False)],
)
def test_each_command_picks_its_collector_thresholds(
    command: str, latency: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The services signals pass through tune the collector for latency; the others not."""
    chosen: list[bool] = []

    def execute(main: Any, *, logs_on_stdout: bool = False, latency: bool = False) -> Any:
        chosen.append(latency)
        main().close()  # the service's coroutine, never started
        return {}

    monkeypatch.setattr(cli.service_commands, "execute", execute)
    result = CliRunner().invoke(cli.app, [command, "--store", str(tmp_path / "a.db"), "--json"])
    assert result.exit_code == 0, result.output
    assert chosen == [latency]


@pytest.mark.anyio
async def test_reading_a_page_of_stored_events_runs_no_collection(
    restored_gc: None, tmp_path: Path
) -> None:
    """Decoding a page of market events creates no cycles: the SQLite store keeps the
    collector out of it (it cost about 40% of reading), and puts it back after."""
    store = SqliteEventStore(tmp_path / "s.db")
    levels = [(f"100.{i:02d}", "1.5") for i in range(10)]
    await store.append([diff(n, n, levels, levels) for n in range(1, 2001)])
    gc.set_threshold(1000, 10, 10)  # a collection every thousand new containers or so
    collections: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        gc.collect()  # counts from zero: the page alone is 50,000 containers or so
        collections.clear()
        page = await store.read_all(0, limit=2000)
        during = len(collections)
        assert gc.isenabled()
        _ = [[object()] for _ in range(5000)]  # with the collector back, it runs again
    finally:
        gc.callbacks.remove(count)
        await store.close()
    assert len(page) == 2000
    assert during <= 1, collections  # the one due, once the collector is back: not ~50
    assert len(collections) > during


def test_an_outer_pause_is_kept(restored_gc: None) -> None:
    """A pause inside a pause (a backtest reading a store) leaves the collector off."""
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
