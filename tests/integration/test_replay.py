"""The replay source on the real Binance recording: synced books, contiguous ids, determinism."""

from __future__ import annotations

import gzip
import itertools
import json
import sys
import time
import zlib
from pathlib import Path

import anyio
import pytest

from algotrade.adapters.memory import InMemoryEventStore, SystemClock
from algotrade.adapters.replay import RecordingSink, ReplayFeed
from algotrade.apps.backtesting import backtest
from algotrade.apps.logs import configure_logging
from algotrade.domain.book import BookSynchronizer
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    MarketEvent,
    SequenceGapDetected,
    TradeReceived,
)
from algotrade.domain.strategy import SmaCrossover
from algotrade.services.collector import Collector

SYMBOLS = ("BTCUSDT", "ETHUSDT", "DOTUSDT")


def replay(path: Path, symbols: tuple[str, ...] = ()) -> list[MarketEvent]:
    """Return every event of the recording, in file order."""
    return list(ReplayFeed(path, symbols=symbols).events())


def test_btcusdt_book_never_crosses_and_ids_are_contiguous(recording: Path) -> None:
    """Synced from the recorded snapshot, every applied diff continues the last one."""
    sync = BookSynchronizer("BTCUSDT", exchange="binance")
    applied: list[DepthDiffReceived] = []
    snapshots = 0
    for event in replay(recording, ("BTCUSDT",)):
        if isinstance(event, DepthDiffReceived):
            out = sync.on_diff(event)
        elif isinstance(event, BookSnapshotTaken):
            out = sync.on_snapshot(event)
            snapshots += 1
        else:
            continue
        assert not any(isinstance(e, SequenceGapDetected) for e in out)
        applied.extend(e for e in out if isinstance(e, DepthDiffReceived))
        top = sync.book.top()
        if sync.synced:
            assert top is not None
            assert top.bid_price < top.ask_price
    assert snapshots == 1
    assert len(applied) > 500
    for before, after in itertools.pairwise(applied):
        assert after.first_update_id == before.final_update_id + 1
    assert all(e.top is not None and e.top.bid_price < e.top.ask_price for e in applied)


def test_replay_is_deterministic(recording: Path) -> None:
    """Two replays of the same file give the same events with the same ids."""
    first = replay(recording)
    second = replay(recording)
    assert len(first) > 4000
    assert first == second
    assert [e.id for e in first] == [e.id for e in second]
    kinds = {type(e) for e in first}
    assert kinds == {DepthDiffReceived, BookSnapshotTaken, TradeReceived}


@pytest.mark.anyio
async def test_collector_syncs_all_three_symbols_with_zero_gaps(recording: Path) -> None:
    """Collected into a store, every symbol's depth stream is contiguous and gap-free."""
    store = InMemoryEventStore()
    feed = ReplayFeed(recording, symbols=SYMBOLS)
    collector = Collector(feed, store, SystemClock())
    await collector.run(anyio.Event())
    assert collector.stats.gaps == 0
    assert collector.stats.rejected == 0
    for symbol in SYMBOLS:
        assert collector.books[symbol].synced
        events = await store.read_stream(f"depth-{symbol}")
        assert isinstance(events[0], BookSnapshotTaken)
        diffs = [e for e in events if isinstance(e, DepthDiffReceived)]
        assert len(diffs) > 500
        assert diffs[0].first_update_id <= events[0].last_update_id + 1 <= diffs[0].final_update_id
        for before, after in itertools.pairwise(diffs):
            assert after.first_update_id == before.final_update_id + 1
        assert [e.version for e in events] == list(range(1, len(events) + 1))


@pytest.mark.anyio
async def test_replaying_twice_stores_nothing_new(recording: Path) -> None:
    """A second collection of the same recording into the same store adds nothing."""
    store = InMemoryEventStore()
    await Collector(ReplayFeed(recording, symbols=["BTCUSDT"]), store, SystemClock()).run(
        anyio.Event()
    )
    head = await store.head()
    again = Collector(ReplayFeed(recording, symbols=["BTCUSDT"]), store, SystemClock())
    await again.run(anyio.Event())
    assert await store.head() == head
    assert again.stats.stored == 0


def test_corrupt_lines_are_counted_with_line_numbers(recording: Path, tmp_path: Path) -> None:
    """A corrupt line is set aside with its number and reason; the replay goes on."""
    lines = recording.read_text(encoding="utf-8").splitlines(keepends=True)
    broken = tmp_path / "broken.raw"
    bad = [
        "1617566592.5: {not json\n",
        "garbage without a timestamp\n",
        '1617566592.6: {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","s":"BTCUSDT"}}\n',
        '1617566592.7: {"stream":"btcusdt@weird","data":{}}\n',
    ]
    broken.write_text("".join(lines[:10] + bad + lines[10:]), encoding="utf-8")
    feed = ReplayFeed(broken)
    events = list(feed.events())
    assert events == replay(recording)
    assert feed.rejected == 4
    rejects = feed.drain_rejects()
    assert [r.where for r in rejects] == ["line 11", "line 12", "line 13", "line 14"]
    assert "not JSON" in rejects[0].reason
    assert "'U'" in rejects[2].reason
    assert "unknown stream" in rejects[3].reason
    assert feed.drain_rejects() == []


def test_a_replay_file_gone_before_it_is_read_is_a_configuration_error(tmp_path: Path) -> None:
    """Removed (or made unreadable) between the command's check and the replay: an error
    naming the source, not an OSError traceback."""
    feed = ReplayFeed(tmp_path / "gone.raw", symbols=["BTCUSDT"])
    with pytest.raises(ConfigurationError, match=r"gone\.raw' cannot be read") as raised:
        list(feed.events())
    assert raised.value.name == "source"


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["alone", "after the last batch"])
async def test_the_collector_counts_every_rejected_line(
    recording: Path, tmp_path: Path, where: str
) -> None:
    """Rejects were counted (and logged) only when a batch of valid events followed them: a
    file of nothing but bad lines ended with `rejected_inputs` 0, and bad lines after the
    last batch were never counted. Each one is logged with its raw text, the data kept aside."""
    garbage = [f"garbage line {i}\n" for i in range(7)]
    lines = recording.read_text(encoding="utf-8").splitlines(keepends=True)[:200]
    path = tmp_path / "bad.raw"
    path.write_text("".join(garbage if where == "alone" else lines + garbage), encoding="utf-8")
    logs = (tmp_path / "collector.log").open("w", encoding="utf-8")
    configure_logging(logs, json=True)
    try:
        collector = Collector(ReplayFeed(path, batch_size=1), InMemoryEventStore(), SystemClock())
        await collector.run(anyio.Event())
    finally:
        configure_logging(sys.stderr)
        logs.close()
    assert collector.stats.rejected == 7
    text = (tmp_path / "collector.log").read_text(encoding="utf-8")
    logged = [json.loads(line) for line in text.splitlines()]
    rejected = [e for e in logged if e["event"] == "input rejected"]
    assert [e["raw"] for e in rejected] == [g.strip() for g in garbage]
    assert rejected[0]["where"].startswith("line ")


def test_a_gzipped_recording_replays_as_it_is(recording: Path, tmp_path: Path) -> None:
    """`gzip session.raw` (a sixth of the size here): replayed without unpacking; cut short
    (a copy interrupted), everything before the cut is replayed and the cut is one reject."""
    packed = tmp_path / "session.raw.gz"
    packed.write_bytes(gzip.compress(recording.read_bytes()))
    assert packed.stat().st_size * 5 < recording.stat().st_size
    assert replay(packed) == replay(recording)

    cut = tmp_path / "cut.raw.gz"
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    feed = ReplayFeed(cut)
    events = list(feed.events())
    assert 100 < len(events) < len(replay(recording))
    assert events == replay(recording)[: len(events)]
    [reject] = feed.drain_rejects()
    assert "the compressed recording ends here" in reject.reason


def test_a_gzipped_recording_backtests_like_the_plain_one(recording: Path, tmp_path: Path) -> None:
    """A gzip-compressed recording gives the backtest of the plain one."""
    packed = tmp_path / "session.raw.gz"
    packed.write_bytes(gzip.compress(recording.read_bytes()))
    plain = backtest(SmaCrossover(3, 10), recording, symbol="BTCUSDT", interval="1s")
    assert plain.signals
    assert backtest(SmaCrossover(3, 10), packed, symbol="BTCUSDT", interval="1s").signals == (
        plain.signals
    )
    damaged = tmp_path / "damaged.gz"
    damaged.write_bytes(b"\x1f\x8b" + b"not deflate at all")
    with pytest.raises(ConfigurationError, match="damaged compressed file"):
        backtest(SmaCrossover(3, 10), damaged)


def test_a_compressed_recording_reaches_the_disk_within_its_flush_period(tmp_path: Path) -> None:
    """Lines written to a gzip recording are on disk (decompressible as they are) once the
    flush period passes, even when no line follows: a killed recorder loses at most that."""
    path = tmp_path / "s.raw.gz"
    sink = RecordingSink(path, flush_every=0.5)
    try:
        sink.write("first")  # held: the period started at the opening
        assert _readable(path) == ""
        time.sleep(0.6)
        sink.write("second")  # due: flushed with it
        sink.write("third")  # not due yet: held in the compressor
        assert _readable(path) == "first\nsecond\n"
        time.sleep(0.6)
        sink.flush_if_due()  # the service's once-a-period call, no new line
        assert _readable(path) == "first\nsecond\nthird\n"
    finally:
        sink.close()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        assert f.read() == "first\nsecond\nthird\n"


def _readable(path: Path) -> str:
    """Return what a reader gets from a gzip file still being written (no trailer yet)."""
    return zlib.decompressobj(wbits=31).decompress(path.read_bytes()).decode()
