"""Each command tunes the garbage collector for what it is judged on: bulk market data
(throughput) or the signal path (the pause a signal may wait for)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from algotrade.apps import cli
from algotrade.apps.common import LATENCY_GC, THROUGHPUT_GC, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_bulk_services_collect_rarely_and_signal_services_keep_pythons_thresholds(
    restored_gc: None,
) -> None:
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
    chosen: list[bool] = []

    def execute(main: Any, *, logs_on_stdout: bool = False, latency: bool = False) -> Any:
        chosen.append(latency)
        main().close()  # the service's coroutine, never started
        return {}

    monkeypatch.setattr(cli, "execute", execute)
    result = CliRunner().invoke(cli.app, [command, "--store", str(tmp_path / "a.db"), "--json"])
    assert result.exit_code == 0, result.output
    assert chosen == [latency]
