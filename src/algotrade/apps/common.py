"""What the entry points share: option parsing, progress, stopping, memory and GC tuning."""

from __future__ import annotations

import gc
import math
import re
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio
import anyio.abc

from algotrade.domain.errors import ConfigurationError
from algotrade.domain.ports import Clock
from algotrade.services.collector import Collector

DEFAULT_STORE = "algotrade.db"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str, *, name: str = "duration") -> float:
    """Parse ``90``, ``90s``, ``10m``, ``2h`` or ``1d`` into seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ConfigurationError(name, f"{text!r} is not a duration like 90s, 10m or 1h")
    seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    if seconds <= 0:
        raise ConfigurationError(name, f"must be positive, got {text!r}")
    return seconds


def parse_speed(text: str) -> float:
    """Parse ``max`` (as fast as possible: infinity) or a positive factor of real time."""
    if text.strip().lower() == "max":
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        raise ConfigurationError("speed", f"{text!r} is not a number or 'max'") from None
    if not speed > 0 or math.isinf(speed) or math.isnan(speed):
        raise ConfigurationError("speed", f"must be a positive number or 'max', got {text!r}")
    return speed


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where market data comes from: ``synthetic``, ``replay`` of a file, or ``binance``."""

    kind: str
    path: Path | None = None


def parse_source(text: str) -> SourceSpec:
    """Parse ``synthetic``, ``replay:PATH`` or ``binance`` (live)."""
    text = text.strip()
    if text == "synthetic":
        return SourceSpec("synthetic")
    if text.startswith("replay:"):
        path = Path(text.removeprefix("replay:"))
        try:
            found = path.is_file()
            exists = found or path.exists()
        except OSError as e:  # a name too long, a directory it may not enter, ...
            raise ConfigurationError(
                "source", f"replay file {str(path)!r} cannot be read: {e.strerror}"
            ) from None
        if not found:
            why = "is not a regular file" if exists else "does not exist"
            raise ConfigurationError("source", f"replay file {str(path)!r} {why}")
        return SourceSpec("replay", path)
    if text == "binance":
        return SourceSpec("binance")
    raise ConfigurationError("source", f"{text!r} is not one of synthetic, replay:PATH, binance")


def parse_symbols(values: Sequence[str]) -> tuple[str, ...]:
    """Split repeated or comma-separated symbols; upper-case and de-duplicate them."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            symbol = part.strip().upper()
            if not symbol:
                continue
            if not symbol.isalnum():
                raise ConfigurationError("symbol", f"{part!r} is not a symbol like BTCUSDT")
            if symbol not in out:
                out.append(symbol)
    if not out:
        raise ConfigurationError("symbol", "at least one symbol is needed")
    return tuple(out)


def parse_retention(text: str) -> float:
    """Parse a retention period: a duration (``7d``, ``12h``), or ``0`` to keep for ever."""
    if text.strip() in ("0", "0s", "0d", "forever"):
        return 0.0
    return parse_duration(text, name="depth-retention")


async def stop_on_signals(
    stop: anyio.Event,
    on_signal: Callable[[str], None],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Set ``stop`` on SIGINT or SIGTERM (a second one exits at once).

    Start it with ``await task_group.start(...)``: the handlers are installed before any
    work begins, so a signal never meets the default action (an abrupt exit).
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            if stop.is_set():
                raise SystemExit(130)
            on_signal(signal.Signals(signum).name)
            stop.set()


async def stop_after(seconds: float, stop: anyio.Event) -> None:
    """Set ``stop`` after ``seconds`` (a command's ``--duration``)."""
    await anyio.sleep(seconds)
    stop.set()


def rate(count: int, seconds: float) -> str:
    """Return ``count`` per second over ``seconds``, for progress lines."""
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "-"


class Progress:
    """One status line per period on stderr (rewritten in place on a terminal)."""

    def __init__(
        self,
        render: Callable[[float], str],
        clock: Clock,
        *,
        stream: TextIO | None = None,
        period: float = 1.0,
    ) -> None:
        self.render = render
        self.clock = clock
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.period = period if self.tty else max(period, 5.0)
        self.started = clock.monotonic()

    async def run(self) -> None:
        """Print the status line every period until cancelled."""
        while True:
            await anyio.sleep(self.period)
            self.show()

    def show(self) -> None:
        """Print the status line now.

        On a terminal the line is cut to its width: a longer one wraps, and rewriting it in
        place then clears only its last row, so every update left a new line behind.
        """
        line = self.render(self.clock.monotonic() - self.started)
        if self.tty:
            line = line[: max(shutil.get_terminal_size().columns - 1, 1)]
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the in-place line on a terminal."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def peak_rss_mib() -> float | None:
    """Return this process's peak resident memory in MiB (Linux ``VmHWM``), if known.

    Unlike ``getrusage``, it starts at ``exec``: a child forked from a large parent does not
    report the parent's memory.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


THROUGHPUT_GC = (50_000, 20, 100)
"""GC thresholds for the commands that move market data in bulk (``run``, collector)."""
LATENCY_GC = (700, 10, 10)
"""Python's own GC thresholds, for the services a signal passes through (processor, trader)."""


def tune_gc(*, latency: bool = False) -> None:
    """Tune the cyclic garbage collector for a long-running service.

    Freezing what start-up built keeps it out of every later collection. Market events are
    short-lived and acyclic, so collections find almost nothing; at the default threshold
    (700 allocations) they still run thousands of times a second in a bulk market-data
    pipeline: collecting the youngest generation every 50,000 allocations instead measured
    about 7% more events per second (``run``, see docs/benchmarks.md).

    A young collection's pause grows with the objects alive since the last one, and a
    signal waits for it: at 50,000 a pause measured 20-30 ms, which set the p99 of the
    append-to-acknowledgement latency (20-27 ms against 3-5 ms with Python's thresholds,
    ``bench/signals.py``); the trader's throughput and the processor's catch-up rate did not
    change. So ``latency=True`` (the processor, which relays signals, and the trader) keeps
    Python's thresholds.
    """
    gc.freeze()
    gc.set_threshold(*(LATENCY_GC if latency else THROUGHPUT_GC))


def book_tops(collector: Collector, shown: int = 3) -> str:
    """Return ``SYMBOL bid/ask`` of the first ``shown`` symbols (``syncing`` until a book is
    synchronised), for progress lines: the prices are what says that data flows."""
    symbols = collector.feed.symbols
    parts = []
    for symbol in symbols[:shown]:
        top = collector.top(symbol)
        parts.append(f"{symbol} {top.bid_price}/{top.ask_price}" if top else f"{symbol} syncing")
    if len(symbols) > shown:
        parts.append(f"+{len(symbols) - shown} more")
    return " ".join(parts)
