"""Replay of recorded Binance sessions in the raw line format of ``shared/data/binance``.

Each line is one of::

    wss://...streams=... <-> T          a connection opened at receive time T
    T: {json}                           one WebSocket text frame received at T
    URL -> T: {json}                    one REST response for URL received at T

``T`` is Unix seconds as a float. Depth snapshots come from ``/depth?symbol=...`` REST
lines. A corrupt line is counted, kept aside with its line number, and skipped. A recording
compressed with gzip (``gzip session.raw``) is read as it is, told by its first bytes.
"""

from __future__ import annotations

import gzip
import re
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
