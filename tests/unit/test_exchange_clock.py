"""Bars on the exchange's clock, whatever this machine's says: a snapshot (which carries no
exchange time) is stamped from the diffs' skew, and a market event whose exchange time
strays from the stream's is counted and kept out of bars instead of freezing them."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from algotrade.apps.backtesting import backtest
from algotrade.domain.bars import Interval
from algotrade.domain.book import BookSynchronizer
from algotrade.domain.events import BarClosed, BookSnapshotTaken, DepthDiffReceived
from algotrade.domain.processing import SymbolPipeline
from algotrade.domain.strategy import SmaCrossover
from algotrade.domain.values import TopOfBook
from tests.support import RECORDING

HOUR = 3600.0
Session = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]
_STAMP = re.compile(r"^(?P<head>wss://\S+ <-> |\S+ -> |)(?P<t>\d+\.\d+)(?P<rest>.*)$", re.S)


def shifted(path: Path, out: Path, offset: float, *, after: float | None = None,
            then: float = 0.0) -> Path:  # fmt: skip
    """Write the recording with every receive time moved by ``offset`` seconds (from the
    line at ``after`` seconds into it on, by ``then`` more): this machine's clock ahead of
    the exchange's (positive) or behind it."""
    lines = path.read_text().splitlines(keepends=True)
    first = None
    written = []
    for line in lines:
        match = _STAMP.match(line)
        if match is None:
            written.append(line)
            continue
        t = float(match["t"])
        first = t if first is None else first
        moved = t + offset + (then if after is not None and t - first >= after else 0.0)
        written.append(f"{match['head']}{moved:.6f}{match['rest']}")
    out.write_text("".join(written))
    return out


def run(path: Path) -> Session:
    """Backtest the recording on 1 s bars; return its bars and signals, clock-free."""
    result = backtest(SmaCrossover(2, 5), path, symbol="BTCUSDT", interval="1s")
    bars = [(b.open_time, b.open, b.high, b.low, b.close, b.updates) for b in result.closed_bars]
    signals = [(s.bar_time, s.side, s.price, s.signal_id) for s in result.signals]
    return bars, signals


@pytest.fixture(scope="module")
def baseline() -> Session:
    """The real recording's bars and signals, its clocks as recorded."""
    if not RECORDING.exists():
        pytest.skip(f"shared recording not found at {RECORDING}")
    return run(RECORDING)


@pytest.mark.parametrize("offset", [3 * HOUR, -3 * HOUR])
def test_a_machine_clock_hours_off_gives_the_bars_and_signals_of_the_recording(
    baseline: Session,
    offset: float,
    tmp_path: Path,
) -> None:
    """This machine hours ahead of the exchange, or behind it: the same bars and signals
    (ids included) as the session replayed with its own clocks."""
    bars, signals = run(shifted(RECORDING, tmp_path / "session.raw", offset))
    assert len(baseline[0]) > 60
    assert bars == baseline[0]
    assert signals == baseline[1]


def test_a_skew_that_changes_mid_run_loses_a_few_events_not_the_bars(
    baseline: Session,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The machine's clock set four hours forward 40 s into the session: the events before
    the new skew is established are kept out (logged), every bar before and after the
    change is the recording's, and bars go on closing to the end."""
    path = shifted(RECORDING, tmp_path / "session.raw", HOUR, after=40.0, then=4 * HOUR)
    with caplog.at_level(logging.WARNING, logger="algotrade.processing"):
        bars, _ = run(path)
    assert any("kept out of bars" in r.getMessage() for r in caplog.records)
    assert any("clock is now" in r.getMessage() for r in caplog.records)
    times = [b[0] for b in baseline[0]]
    change = times[0] + 40 * 10**9
    same = {b[0]: b for b in bars}
    for bar in baseline[0]:
        if bar[0] < change - 2 * 10**9 or bar[0] > change + 5 * 10**9:
            assert same.get(bar[0]) == bar, bar
    assert bars[-1][0] == baseline[0][-1][0]


def diff(update: int, exchange_s: float, receive_s: float, price: str = "100") -> DepthDiffReceived:
    """One diff of update ``update`` with a bid and an ask around ``price``."""
    p = Decimal(price)
    return DepthDiffReceived(
        stream="depth.X", version=0, exchange_ts=int(exchange_s * 1e9),
        receive_ts=int(receive_s * 1e9), exchange="binance", symbol="X",
        first_update_id=update, final_update_id=update,
        bids=((p - 1, Decimal(1)),), asks=((p + 1, Decimal(1)),),
    )  # fmt: skip


def test_a_snapshot_is_stamped_on_the_exchange_clock_from_the_diffs_skew() -> None:
    """Diffs three hours behind this machine: the snapshot (stamped here by its parser) is
    stored at its receive time less that skew, between the diffs around it."""
    sync = BookSynchronizer("X", exchange="binance")
    skew = 3 * HOUR
    for update in range(1, 6):
        assert sync.on_diff(diff(update, 1000 + update, 1000 + update + skew)) == []
    snapshot = BookSnapshotTaken(
        stream="depth.X", version=0, exchange_ts=int((1003.5 + skew) * 1e9),
        receive_ts=int((1003.5 + skew) * 1e9), exchange="binance", symbol="X",
        last_update_id=3, bids=((Decimal(99), Decimal(1)),), asks=((Decimal(101), Decimal(1)),),
    )  # fmt: skip
    stored = sync.on_snapshot(snapshot)
    late = replace(
        snapshot, receive_ts=int((1010 + skew) * 1e9), exchange_ts=int((1010 + skew) * 1e9)
    )
    again = BookSynchronizer("X", exchange="binance")
    for update in range(1, 6):
        again.on_diff(diff(update, 1000 + update, 1000 + update + skew))
    bounded = [e for e in again.on_snapshot(late) if isinstance(e, BookSnapshotTaken)]
    assert bounded[0].exchange_ts == int(1004 * 1e9)  # never after the diff that follows it
    kept = [e for e in stored if isinstance(e, BookSnapshotTaken)]
    assert len(kept) == 1
    assert kept[0].exchange_ts == int(1003.5 * 1e9)  # received less the skew: 3 h
    assert kept[0].receive_ts == snapshot.receive_ts
    assert [e.final_update_id for e in stored if isinstance(e, DepthDiffReceived)] == [4, 5]


def test_an_event_off_the_streams_clock_is_counted_and_kept_out_of_bars() -> None:
    """A snapshot stamped with this machine's time amid diffs three hours behind it would
    open a bar in the future and drop every later price: it is kept out, counted, and the
    bars close as before."""
    pipeline = SymbolPipeline("X", Interval.parse("1s"), SmaCrossover(2, 3))
    skew = int(3 * HOUR * 1e9)
    closed: list[BarClosed] = []
    for k in range(40):
        top = TopOfBook(Decimal(99), Decimal(1), Decimal(101), Decimal(1))
        event = replace(diff(k + 1, 1000 + k * 0.5, 0), top=top,
                        receive_ts=int((1000 + k * 0.5) * 1e9) + skew)  # fmt: skip
        if k == 10:  # a local time for an exchange time
            event = replace(event, exchange_ts=event.receive_ts)
        closed += [e for e in pipeline.on_event(event, k + 1) if isinstance(e, BarClosed)]
    assert pipeline.off_clock == 1
    assert len(closed) == 19  # 20 s of half-second prices: every second closed but the last
