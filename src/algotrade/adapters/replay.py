"""Replay of recorded Binance sessions in the raw line format of ``shared/data/binance``.

Each line is one of::

    wss://...streams=... <-> T          a connection opened at receive time T
    T: {json}                           one WebSocket text frame received at T
    URL -> T: {json}                    one REST response for URL received at T

``T`` is Unix seconds as a float. Depth snapshots come from ``/depth?symbol=...`` REST
lines. A corrupt line is counted, kept aside with its line number, and skipped. A recording
compressed with gzip (``gzip session.raw``) is read as it is, told by its first bytes;
:class:`RecordingSink` writes one, compressed when its name ends in ``.gz``.
"""

from __future__ import annotations

import gzip
import re
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qs, urlparse

import anyio

from algotrade.adapters.binance.messages import parse_depth_snapshot, parse_frame
from algotrade.domain.errors import ConfigurationError, InvalidInputError
from algotrade.domain.events import MarketEvent
from algotrade.domain.ports import RejectedInput

_FRAME = re.compile(r"^(\d+(?:\.\d+)?): (.*)$", re.DOTALL)
_REST = re.compile(r"^(\S+) -> (\d+(?:\.\d+)?): (.*)$", re.DOTALL)
_OPEN = re.compile(r"^(wss?://\S+) <-> (\d+(?:\.\d+)?)$")
_MAX_RAW = 500


_GZIP = b"\x1f\x8b"


def open_recording(path: Path) -> TextIO:
    """Open a recording as text, compressed with gzip or not (told by its first bytes).

    Raises:
        OSError: the file cannot be opened.
    """
    with path.open("rb") as probe:
        compressed = probe.read(2) == _GZIP
    if compressed:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


COMPRESSED_SUFFIXES = (".gz", ".gzip")


class RecordingSink:
    """Appends lines to a recording: plain text, or gzip when the name ends in ``.gz``.

    A plain recording is flushed at every line, so a killed recorder keeps every line it
    received. A compressed one is flushed (a zlib sync point) at most every
    ``flush_every`` seconds: a flush per line would shrink the shared session 5.1x instead
    of 6.6x (once a second: 6.5x). A killed recorder loses at most that much, and the file
    it leaves replays up to the cut (with :meth:`flush_if_due` called every second, even
    after a lull in the lines). Appending to an existing compressed file adds a gzip
    member, which readers (ours, ``gunzip``, ``zcat``) read as one stream.

    Raises:
        OSError: from the constructor, :meth:`write` and :meth:`close`; a write error may
            surface at a later line's flush for a compressed file (within ``flush_every``).
    """

    def __init__(self, path: Path, *, flush_every: float = 1.0) -> None:
        self.compressed = path.suffix.lower() in COMPRESSED_SUFFIXES
        self.flush_every = 0.0 if not self.compressed else flush_every
        # Held open for the whole recording; close() ends it.
        self._sink: TextIO = (
            gzip.open(path, "at", encoding="utf-8")  # noqa: SIM115
            if self.compressed
            else path.open("a", encoding="utf-8")
        )
        self._flushed = time.monotonic()

    def write(self, line: str) -> None:
        """Append one line (without its newline); flush as the file's kind says."""
        self._sink.write(line + "\n")
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Flush when ``flush_every`` seconds passed since the last flush. Call it every
        ``flush_every`` seconds too, so that lines written before a lull reach the disk."""
        now = time.monotonic()
        if now - self._flushed >= self.flush_every:
            self._sink.flush()
            self._flushed = now

    def close(self) -> None:
        """Flush and close (a compressed file gets its gzip trailer)."""
        self._sink.close()


def _ns(seconds: str) -> int:
    whole, _, frac = seconds.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


class ReplayFeed:
    """A :class:`~algotrade.domain.ports.MarketFeed` over a recorded raw file.

    Args:
        path: the recording.
        symbols: the symbols to keep (upper case); empty keeps every symbol.
        batch_size: events per yielded batch.
    """

    def __init__(
        self, path: str | Path, *, symbols: Iterable[str] = (), batch_size: int = 1000
    ) -> None:
        self.path = Path(path)
        self._symbols = tuple(s.upper() for s in symbols)
        self._keep = frozenset(self._symbols)
        self.batch_size = batch_size
        self.lines = 0
        self.connections = 0
        self.ignored = 0
        self._rejected = 0
        self._rejects: list[RejectedInput] = []

    @property
    def symbols(self) -> tuple[str, ...]:
        """Return the symbols kept (empty: all)."""
        return self._symbols

    @property
    def rejected(self) -> int:
        """Return how many corrupt lines were skipped."""
        return self._rejected

    def drain_rejects(self) -> list[RejectedInput]:
        """Return and forget the corrupt lines set aside since the last call."""
        out, self._rejects = self._rejects, []
        return out

    async def request_snapshot(self, symbol: str) -> None:
        """Nothing to ask: a recording's snapshots arrive where they were recorded."""

    def events(self) -> Iterator[MarketEvent]:
        """Yield the recording's market events in file order (synchronously)."""
        try:
            opened = open_recording(self.path)
        except OSError as e:  # gone since the command checked it, or not readable
            raise ConfigurationError(
                "source", f"replay file {str(self.path)!r} cannot be read: {e.strerror}"
            ) from e
        number = 0
        with opened as lines:
            try:
                for number, line in enumerate(lines, start=1):
                    self.lines = number
                    line = line.rstrip("\n")
                    if not line.strip():
                        continue
                    try:
                        event = self._parse(line)
                    except InvalidInputError as e:
                        self._reject(number, str(e), line)
                        continue
                    if event is None:
                        continue
                    if self._keep and event.symbol not in self._keep:
                        continue
                    yield event
            except (EOFError, gzip.BadGzipFile, zlib.error) as e:
                # Compressed, and cut short or damaged: what came before was read.
                self._reject(number + 1, f"the compressed recording ends here: {e}", "")

    async def batches(self) -> AsyncIterator[Sequence[MarketEvent]]:
        """Yield the recording's events in batches."""
        batch: list[MarketEvent] = []
        for event in self.events():
            batch.append(event)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
                await anyio.lowlevel.checkpoint()
        if batch:
            yield batch

    def _parse(self, line: str) -> MarketEvent | None:
        if line.startswith(("wss://", "ws://")):
            if _OPEN.match(line) is None:
                raise InvalidInputError("malformed connection line")
            self.connections += 1
            return None
        if line.startswith(("https://", "http://")):
            rest = _REST.match(line)
            if rest is None:
                raise InvalidInputError("malformed REST line: expected 'URL -> T: {json}'")
            url, ts, body = rest.groups()
            parsed = urlparse(url)
            if not parsed.path.endswith("/depth"):
                self.ignored += 1
                return None
            symbol = parse_qs(parsed.query).get("symbol", [""])[0].upper()
            if not symbol:
                raise InvalidInputError(f"depth request without a symbol: {url}")
            return parse_depth_snapshot(symbol, body, _ns(ts))
        frame = _FRAME.match(line)
        if frame is None:
            raise InvalidInputError("not a frame, REST or connection line")
        event = parse_frame(frame[2], _ns(frame[1]))
        if event is None:
            self.ignored += 1
        return event

    def _reject(self, number: int, reason: str, line: str) -> None:
        self._rejected += 1
        raw = line if len(line) <= _MAX_RAW else line[:_MAX_RAW] + "..."
        self._rejects.append(RejectedInput(str(self.path), f"line {number}", reason, raw))
