"""The progress line: rewritten in place on a terminal, one line per period elsewhere."""

from __future__ import annotations

import io

import pytest

from algotrade.adapters.memory import InMemoryEventStore, SystemClock
from algotrade.adapters.synthetic import SyntheticFeed
from algotrade.apps.common import Progress, book_tops
from algotrade.services.collector import Collector
from tests.support.builders import snapshot

pytestmark = pytest.mark.anyio


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_line_wider_than_the_terminal_is_cut_to_its_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal of 40 columns a 100-character line is cut to 39: a line that wraps is
    not rewritten in place (the clear reaches its last row only), so every update of the
    collector's 150-character line on an 80-column terminal left a new line behind."""
    monkeypatch.setenv("COLUMNS", "40")
    terminal = _Terminal()
    line = "x" * 60 + "y" * 40
    progress = Progress(lambda _: line, SystemClock(), stream=terminal)
    progress.show()
    progress.show()
    assert terminal.getvalue() == ("\r\x1b[2K" + "x" * 39) * 2


def test_a_line_that_fits_and_a_line_to_a_file_are_written_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a terminal cuts, and only what does not fit: a file gets every line whole."""
    monkeypatch.setenv("COLUMNS", "40")
    terminal, file = _Terminal(), io.StringIO()
    Progress(lambda _: "z" * 39, SystemClock(), stream=terminal).show()
    Progress(lambda _: "w" * 100, SystemClock(), stream=file).show()
    assert terminal.getvalue() == "\r\x1b[2K" + "z" * 39
    assert file.getvalue() == "w" * 100 + "\n"


async def test_book_tops_show_prices_of_the_first_three_symbols_and_count_the_rest() -> None:
    """A synchronised book shows its best bid and ask, the others `syncing`; symbols past
    the third are counted, so the line stays short."""
    symbols = ("BTCUSDT", "ETHUSDT", "DOTUSDT", "BNBUSDT", "SOLUSDT")
    collector = Collector(SyntheticFeed(symbols), InMemoryEventStore(), SystemClock())
    await collector.handle([snapshot(7, (("29999.98", "2"),), (("30000.01", "1"),))])
    await collector.handle([snapshot(9, (("9.5", "1"),), (("9.6", "1"),), symbol="BNBUSDT")])
    assert (
        book_tops(collector) == "BTCUSDT 29999.98/30000.01 ETHUSDT syncing DOTUSDT syncing +2 more"
    )
