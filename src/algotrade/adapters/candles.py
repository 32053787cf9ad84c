"""OHLCV candles in Binance's kline layout, from CSV files and from ``/api/v3/klines``.

Binance's public data files (data.binance.vision, ``BTCUSDT-1d-2024-01.csv``) and the
REST endpoint share one row layout::

    open time, open, high, low, close, volume, close time, quote volume, trades,
    taker buy base volume, taker buy quote volume, ignore

Files may start with a header row; timestamps are milliseconds, or microseconds (spot
files since 2025): each row's unit is recognised from its size. A candle becomes a
:class:`~algotrade.domain.events.BarClosed` covering ``[open time, open time + interval)``.
A malformed row is reported with its line number, kept aside, and skipped.
"""

from __future__ import annotations

import io
import mmap
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from algotrade.domain.bars import Interval
from algotrade.domain.errors import ConfigurationError, InvalidInputError
from algotrade.domain.events import BarClosed
from algotrade.domain.ports import RejectedInput
from algotrade.domain.streams import bar_stream

_MS = 1_000_000
_US = 1_000
_MICROS_FROM = 10**14  # a millisecond timestamp this large would be in the year 5138
_FILE_NAME = re.compile(r"^([A-Z0-9]+)-(\d+[smhdw])(?:-|\.|$)")
_MAX_RAW = 300
_BINANCE_INTERVALS = frozenset(
    ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
)


@dataclass
class Candles:
    """Bars read from candles, with what was learnt about them and what was rejected."""

    symbol: str
    interval: Interval
    bars: Sequence[BarClosed] = field(default_factory=list)
    rejected: list[RejectedInput] = field(default_factory=list)
    rows: int = 0


def interval_of(nanos: int) -> Interval:
    """Return the interval of ``nanos`` named with the largest unit that divides it."""
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        scaled = size * 1_000_000_000
        if nanos > 0 and nanos % scaled == 0:
            return Interval(f"{nanos // scaled}{unit}", nanos)
    raise InvalidInputError(f"a candle of {nanos} ns is not a whole number of seconds")


def _timestamp(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("negative timestamp")
    return value * (_US if value >= _MICROS_FROM else _MS)


def _price(name: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidInputError(f"{name} {text!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise InvalidInputError(f"{name} {text!r} is not a positive price")
    return value


def candle_bar(
    fields: Sequence[Any], symbol: str, interval: Interval | None, version: int
) -> tuple[BarClosed, Interval]:
    """Return the bar of one kline row (strings or REST values) and its interval.

    Raises:
        InvalidInputError: the row is not a kline.
    """
    if len(fields) < 7:
        raise InvalidInputError(
            f"expected at least 7 fields (open time .. close time), got {len(fields)}"
        )
    try:
        open_time = _timestamp(str(fields[0]).strip())
        close_time = _timestamp(str(fields[6]).strip())
    except ValueError:
        raise InvalidInputError(
            f"open time {fields[0]!r} or close time {fields[6]!r} is not an integer timestamp"
        ) from None
    span = close_time - open_time + (_US if int(str(fields[6]).strip()) >= _MICROS_FROM else _MS)
    if span <= 0:
        raise InvalidInputError("close time is before open time")
    row_interval = interval_of(span)
    if interval is not None and row_interval.nanos != interval.nanos:
        raise InvalidInputError(f"a {row_interval.name} candle among {interval.name} candles")
    o, h, low, c = (_price(n, str(fields[i]).strip()) for i, n in
                    ((1, "open"), (2, "high"), (3, "low"), (4, "close")))  # fmt: skip
    if not (low <= o <= h and low <= c <= h):
        raise InvalidInputError(f"prices out of order: open {o} high {h} low {low} close {c}")
    trades = 0
    if len(fields) > 8:
        try:
            trades = int(str(fields[8]).strip())
        except ValueError:
            raise InvalidInputError(f"number of trades {fields[8]!r} is not an integer") from None
    end = open_time + row_interval.nanos
    return (
        BarClosed(
            stream=bar_stream(symbol, row_interval.name),
            version=version,
            exchange_ts=end,
            receive_ts=end,
            symbol=symbol,
            interval=row_interval.name,
            open_time=open_time,
            close_time=end,
            open=o,
            high=h,
            low=low,
            close=c,
            updates=trades,
            last_position=0,
        ),
        row_interval,
    )


def names_of(path: Path) -> tuple[str | None, str | None]:
    """Return the symbol and interval a Binance data file name gives, if any."""
    match = _FILE_NAME.match(path.name)
    return (match[1], match[2]) if match else (None, None)


def _is_header(line: str) -> bool:
    first = line.split(",", 1)[0].strip().strip('"').lower()
    return bool(first) and not first[0].isdigit() and "open" in first


def read_candles(
    path: str | Path, *, symbol: str | None = None, interval: str | None = None
) -> Candles:
    """Read a kline CSV file into bars, in open-time order.

    ``symbol`` and ``interval`` default to those in a Binance file name
    (``BTCUSDT-1h-2024-01.csv``); the interval otherwise comes from the first valid row,
    and the symbol defaults to BTCUSDT. A row that is malformed, of another interval, or
    not after the previous one is rejected with its line number.

    Raises:
        ConfigurationError: the file cannot be read or holds no valid candle.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            # mapped, not read: the compiled reader scans the file where it lies
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except OSError as e:
        raise ConfigurationError("data", f"cannot read {path}: {e.strerror}") from None
    try:
        return read_candle_bytes([(str(path), data)], symbol=symbol, interval=interval)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def read_candle_bytes(
    files: Sequence[tuple[str, bytes | mmap.mmap]],
    *,
    symbol: str | None = None,
    interval: str | None = None,
) -> Candles:
    """Read kline CSV files given as bytes (``(name, data)``, in time order) as
    :func:`read_candle_files` does: by the compiled reader into columns when it is built
    and reads every file (no reject, one interval, each file after the one before), else
    line by line.

    Raises:
        ConfigurationError: no file holds a valid candle.
    """
    fast = _columns_of(files, symbol, interval)
    if fast is not None:
        return fast
    texts = ((name, io.StringIO(data[:].decode("utf-8", errors="replace"))) for name, data in files)
    return read_candle_files(texts, symbol=symbol, interval=interval)


def _columns_of(
    files: Sequence[tuple[str, bytes | mmap.mmap]], symbol: str | None, interval: str | None
) -> Candles | None:
    from algotrade.adapters import speedups
    from algotrade.adapters.columns import KlineColumns

    scan = speedups.scan_klines
    if scan is None or not files:
        return None
    scans = []
    for _, data in files:
        end = data.find(b"\n")
        first = data[: end + 1 if end >= 0 else len(data)]  # bytes, of bytes and of a mmap
        start = len(first) if _is_header(first.decode("utf-8", errors="replace")) else 0
        scanned = scan(data, start, os.cpu_count() or 1)  # parts of the file on every core
        if scanned is None:
            return None
        scans.append(scanned)
    named_symbol, named_interval = names_of(Path(files[0][0]))
    given = interval or named_interval
    found = Interval.parse(given) if given else interval_of(scans[0][0])
    name = (symbol or named_symbol or "BTCUSDT").upper()
    columns = KlineColumns.joined(name, found, scans)
    if columns is None:
        return None
    return Candles(name, found, columns, rows=len(columns))


def read_candle_files(
    files: Iterable[tuple[str, Iterable[str]]],
    *,
    symbol: str | None = None,
    interval: str | None = None,
) -> Candles:
    """Read kline CSV files that follow each other (``(name, lines)``, in time order, such
    as a data set's monthly archives) into one series of bars.

    Names, header rows and rejects are as for :func:`read_candles`, the first file's name
    giving the defaults; a candle not after the previous file's last is rejected too.

    Raises:
        ConfigurationError: no file holds a valid candle.
    """
    result: Candles | None = None
    wanted: Interval | None = None
    last_open = [-1]
    names: list[str] = []
    bars: list[BarClosed] = []
    for name, lines in files:
        names.append(name)
        if result is None:
            named_symbol, named_interval = names_of(Path(name))
            given = interval or named_interval
            wanted = Interval.parse(given) if given else None
            result = Candles(
                (symbol or named_symbol or "BTCUSDT").upper(),
                wanted or Interval("1m", 60 * 10**9),
                bars,
            )
        for bar, found in _rows(lines, result, wanted, name, last_open, bars):
            if wanted is None:
                wanted = result.interval = found
            bars.append(bar)
    if result is None or not bars:
        rejected = result.rejected if result is not None else []
        reasons = "; ".join(f"{r.where}: {r.reason}" for r in rejected[:3])
        where = names[0] if len(names) == 1 else f"{len(names)} files"
        raise ConfigurationError(
            "data", f"no valid candle in {where}" + (f" ({reasons})" if reasons else "")
        )
    return result


def _rows(
    lines: Iterable[str],
    result: Candles,
    interval: Interval | None,
    source: str,
    last_open: list[int],
    bars: list[BarClosed],
) -> Iterator[tuple[BarClosed, Interval]]:
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if number == 1 and _is_header(text):
            continue
        result.rows += 1
        try:
            bar, found = candle_bar(text.split(","), result.symbol, interval, len(bars) + 1)
            if bar.open_time <= last_open[0]:
                raise InvalidInputError("not after the previous candle (duplicate or out of order)")
        except InvalidInputError as e:
            raw = text if len(text) <= _MAX_RAW else text[:_MAX_RAW] + "..."
            result.rejected.append(RejectedInput(source, f"line {number}", str(e), raw))
            continue
        interval = found
        last_open[0] = bar.open_time
        yield bar, found


def resample(bars: Iterable[BarClosed], interval: Interval) -> Iterator[BarClosed]:
    """Merge shorter bars into bars of ``interval`` (a multiple of theirs), epoch-aligned.

    A merged bar's open is its first bar's, high and low the extremes, close the last
    bar's close; it closes when a bar of a later interval arrives, or at the end.
    """
    current: list[BarClosed] = []
    version = 0
    for bar in bars:
        size = bar.close_time - bar.open_time
        if interval.nanos % size:
            raise ConfigurationError(
                "interval", f"{interval.name} is not a multiple of the data's {bar.interval} bars"
            )
        start = bar.open_time - bar.open_time % interval.nanos
        if current and current[0].open_time - current[0].open_time % interval.nanos != start:
            version += 1
            yield _merge(current, interval, version)
            current = []
        current.append(bar)
    if current:
        yield _merge(current, interval, version + 1)


def _merge(bars: list[BarClosed], interval: Interval, version: int) -> BarClosed:
    first, last = bars[0], bars[-1]
    start = first.open_time - first.open_time % interval.nanos
    return BarClosed(
        stream=bar_stream(first.symbol, interval.name),
        version=version,
        exchange_ts=last.exchange_ts,
        receive_ts=last.receive_ts,
        symbol=first.symbol,
        interval=interval.name,
        open_time=start,
        close_time=start + interval.nanos,
        open=first.open,
        high=max(b.high for b in bars),
        low=min(b.low for b in bars),
        close=last.close,
        updates=sum(b.updates for b in bars),
        last_position=last.last_position,
    )


def binance_interval(interval: Interval) -> str | None:
    """Return Binance's name of ``interval`` for ``/api/v3/klines``, ``None`` if it has none."""
    return interval.name if interval.name in _BINANCE_INTERVALS else None
