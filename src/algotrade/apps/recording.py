"""``algotrade record``: the live feed's raw frames and REST answers into a file that
replays (``--source replay:FILE``), with the collector's book logic asking for the
snapshots a gap needs."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from algotrade.adapters import speedups
from algotrade.adapters.binance.feed import BinanceFeed
from algotrade.adapters.memory import SystemClock
from algotrade.adapters.replay import RecordingSink
from algotrade.apps.common import book_tops
from algotrade.apps.serving import serve
from algotrade.apps.settings import FeedSettings, ServiceSettings
from algotrade.apps.wiring import binance_feed_parts, log_notices
from algotrade.domain.errors import RecorderError
from algotrade.domain.events import Event
from algotrade.domain.ports import AppendResult, StoredEvent, Tracking
from algotrade.services.collector import Collector


class _DiscardingStore:
    """An event store that keeps nothing: ``record`` only needs the collector's book logic
    (gap detection and resync requests), not its storage."""

    def __init__(self) -> None:
        self._position = 0

    async def append(
        self, events: Sequence[Event], *, tracking: Tracking | None = None
    ) -> AppendResult:
        """Number the events and forget them."""
        first = self._position + 1
        self._position += len(events)
        return AppendResult(tuple(StoredEvent(first + i, e) for i, e in enumerate(events)), 0)

    async def last_event(self, stream: str) -> Event | None:
        """Nothing is kept."""
        return None


def _write_failed(out: Path, error: OSError) -> RecorderError:
    return RecorderError(f"cannot write the recording {str(out)!r}: {error.strerror or error}")


async def _flush_every(sink: RecordingSink, out: Path) -> None:
    while True:
        await anyio.sleep(sink.flush_every)
        try:
            sink.flush_if_due()
        except OSError as e:
            raise _write_failed(out, e) from e


async def run_record(
    feed_settings: FeedSettings, out: Path, duration: float | None
) -> dict[str, Any]:
    """Record the live feed's raw frames and REST answers into ``out`` (the replay format).

    The collector's book logic runs on the frames (nothing is stored), so that a gap asks for
    a new snapshot, which is recorded too: the file replays into synchronised books.
    """
    clock = SystemClock()
    lines = 0
    try:
        sink = RecordingSink(out)
    except OSError as e:
        raise RecorderError(f"cannot open the recording {str(out)!r}: {e.strerror}") from e

    def write(line: str) -> None:
        """Write each line, flushed as it comes (plain) or every second (gzip): a killed
        recorder keeps what it received (all of it, or all but the last second), and a
        full disk stops the recording at once (or within the second), not at the close."""
        nonlocal lines
        try:
            sink.write(line)
        except OSError as e:
            raise _write_failed(out, e) from e
        lines += 1

    feed = BinanceFeed(
        feed_settings.symbols,
        clock,
        ws_url=feed_settings.binance_ws_url,
        rest_url=feed_settings.binance_rest_url,
        recorder=write,
        notify=log_notices("record"),
    )
    parts = binance_feed_parts(feed, clock)
    discarding: Any = _DiscardingStore()  # the two methods the collector calls
    collector = Collector(feed, discarding, clock, synchronizer=speedups.synchronizer)

    async def work(stop: anyio.Event) -> None:
        """Record until ``stop``; a compressed file is flushed every second, lull or not."""
        async with anyio.create_task_group() as tg:
            if sink.compressed:
                tg.start_soon(_flush_every, sink, out)
            await collector.run(stop)
            tg.cancel_scope.cancel()

    started = clock.monotonic()
    try:
        await serve(
            "record",
            work,
            lambda e: (
                f"[record] {e:6.1f}s {book_tops(collector)} lines={lines:,}"
                f" events={collector.stats.received:,}"
                f" gaps={collector.stats.gaps}{parts.line()}"
            ),
            clock,
            settings=ServiceSettings(duration=duration),
        )
    except BaseException:
        # Closing can only fail again on what the failure already reported (a full disk);
        # the file descriptor is closed either way.
        with contextlib.suppress(OSError):
            sink.close()
        raise
    try:
        sink.close()  # a compressed recording writes its last second and trailer here
    except OSError as e:
        raise _write_failed(out, e) from e
    return {
        "file": str(out),
        "lines": lines,
        "events": collector.stats.received,
        "gaps": collector.stats.gaps,
        "seconds": round(clock.monotonic() - started, 3),
        **parts.summary(),
    }
