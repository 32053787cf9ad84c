"""Backtests and the parity proof: one strategy object, the live code path, any history.

:func:`backtest` reads history (kline CSV files, recorded raw Binance sessions, an event
store, or bars in memory) and runs it through the live processor's
:class:`~algotrade.domain.processing.SymbolPipeline` with the trader's paper-trading rules.
:func:`parity` runs a recording through the live services' path (collector into a store,
processor following it, outbox relay publishing) and through :func:`backtest`, and
compares the two signal lists.
"""

from __future__ import annotations

import re
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from functools import partial
from itertools import chain, islice
from pathlib import Path

import anyio

from algotrade.adapters import codec, speedups
from algotrade.adapters.binance.archives import archive_bytes, kept_archives
from algotrade.adapters.candles import Candles, read_candle_bytes, read_candles, resample
from algotrade.adapters.memory import SystemClock
from algotrade.adapters.replay import ReplayFeed, open_recording
from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.adapters.synthetic import synthetic_bars
from algotrade.domain.backtest import Backtester, BacktestResult
from algotrade.domain.bars import BarColumns, Interval
from algotrade.domain.book import BookSynchronizer
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import (
    BarClosed,
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    SignalEmitted,
    TradeReceived,
)
from algotrade.domain.ports import RejectedInput
from algotrade.domain.processing import PriceSource, Processor, SymbolPipeline
from algotrade.domain.strategy import EQUAL_WITHIN, Decision, SmaCrossover, Strategy
from algotrade.domain.values import Side
from algotrade.services.backtesting import History, ParityResult, SymbolChoice, live_path
from algotrade.services.processor import MARKET_TYPES

Data = str | Path | Iterable[BarClosed]
"""What :func:`backtest` reads: a kline CSV file, a recorded raw session, an event store
URL (``mongodb://...``, ``sqlite:///file.db``, a ``.db`` file), or closed bars."""

CHUNK = 65_536
MARKET_INTERVAL = Interval("1m", 60 * 1_000_000_000)
"""Bars built from market events when no interval is given."""
_STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_DATA_SET = re.compile(r"^([A-Za-z0-9]{2,20}):(\d+[smhdw]|1mo)$")


def data_set(text: str) -> tuple[str, str] | None:
    """Return the symbol and interval ``SYMBOL:INTERVAL`` names (``BTCUSDT:1m``: the
    archives ``algotrade download`` kept), ``None`` for anything else or an existing file."""
    match = _DATA_SET.match(text)
    if match is None or Path(text).exists():
        return None
    return match[1].upper(), match[2]


def read_data_set(symbol: str, interval: str) -> tuple[Candles, str]:
    """Read every kept archive of a data set, in time order; return its candles and a
    description of the source.

    Raises:
        ConfigurationError: no archive kept, or one unreadable.
    """
    from algotrade.apps.settings import data_directory

    root = data_directory()
    paths = kept_archives(root, symbol, interval)
    files = [(str(p), archive_bytes(p)) for p in paths]
    candles = read_candle_bytes(files, symbol=symbol, interval=interval)
    return candles, f"{symbol}:{interval} ({len(paths)} archives in {root})"


class MarketEvents:
    """A recording's or an event store's market events of one symbol, read a page at a time.

    :func:`backtest` runs them as they are read, so a week of stored depth needs the memory
    of one page, not of the week. The symbol is the one asked for, or the first one met;
    ``other_symbols``, ``rejected`` (corrupt lines of a recording) and ``read`` fill in as
    the pages are read. Each call of :meth:`pages` reads the source again from its start.
    """

    def __init__(
        self, data: str | Path, *, symbol: str | None = None, interval: Interval | None = None
    ) -> None:
        self.source = str(data)
        self.store = is_store_url(self.source)
        self.path = Path(data)
        if not self.store and not self.path.is_file():
            raise ConfigurationError("data", f"{self.path} is not a file")
        self.interval = interval or MARKET_INTERVAL
        self.asked = symbol.upper() if symbol else None
        self._choice = SymbolChoice(self.asked)
        self.rejected: list[RejectedInput] = []
        self.read = 0

    @property
    def symbol(self) -> str | None:
        """The symbol tested: the one asked for, or the first one read."""
        return self._choice.symbol

    @property
    def other_symbols(self) -> set[str]:
        """The other symbols met so far."""
        return self._choice.others

    def pages(self, size: int = 10_000) -> Iterator[list[tuple[Event, int]]]:
        """Yield the chosen symbol's ``(event, position)`` pairs, in order, a page at a time.

        Raises:
            ConfigurationError: the source cannot be read, or holds no market event.
        """
        self._choice, self.read, self.rejected = SymbolChoice(self.asked), 0, []
        found = self._store_pages(size) if self.store else self._recording_pages(size)
        for page in found:
            if page:
                self.read += len(page)
                yield page
        self._choice.chosen(self.read, ("stored in " if self.store else "in ") + self.source)

    def _recording_pages(self, size: int) -> Iterator[list[tuple[Event, int]]]:
        feed = ReplayFeed(self.path, symbols=[self.asked] if self.asked else ())
        books: dict[str, BookSynchronizer] = {}
        page: list[tuple[Event, int]] = []
        position = 0
        for event in feed.events():
            if not self._choice.keeps(event):
                continue
            out: Sequence[Event]
            if isinstance(event, DepthDiffReceived | BookSnapshotTaken):
                sync = books.get(event.symbol)
                if sync is None:
                    sync = books[event.symbol] = speedups.synchronizer(
                        event.symbol, exchange=event.exchange
                    )
                if isinstance(event, DepthDiffReceived):
                    out = sync.on_diff(event)
                else:
                    out = sync.on_snapshot(event)
            elif isinstance(event, TradeReceived):
                out = (event,)
            else:
                continue
            for produced in out:
                position += 1
                page.append((produced, position))
            if len(page) >= size:
                self.rejected.extend(feed.drain_rejects())
                yield page
                page = []
        self.rejected.extend(feed.drain_rejects())
        yield page

    def _store_pages(self, size: int) -> Iterator[list[tuple[Event, int]]]:
        # The store is asynchronous and the backtest is not: the store lives in an event
        # loop of its own thread, asked for one page at a time.
        from algotrade.apps.wiring import open_store  # the store drivers, only for a store

        with anyio.from_thread.start_blocking_portal() as portal:
            store = portal.call(lambda: open_store(self.source, patient=False, existing="data"))
            try:
                after = 0
                while batch := portal.call(  # the top of book is what a backtest reads
                    partial(store.read_all, after, limit=size, types=MARKET_TYPES, levels=False)
                ):
                    after = batch[-1].position
                    keeps = self._choice.keeps
                    yield [(s.event, s.position) for s in batch if keeps(s.event)]
            finally:
                portal.call(store.close)


def is_store_url(text: str) -> bool:
    """Return whether ``text`` names an event store rather than a file of history."""
    return text.startswith(("mongodb://", "mongodb+srv://", "sqlite:")) or text.endswith(
        _STORE_SUFFIXES
    )


def _is_recording(path: Path) -> bool:
    try:
        with open_recording(path) as lines:
            for line in islice(lines, 20):
                text = line.strip()
                if not text:
                    continue
                head = text.split(":", 1)[0]
                return text.startswith(("wss://", "ws://", "http://", "https://")) or (
                    head.replace(".", "", 1).isdigit() and ": " in text[: len(head) + 2]
                )
    except (OSError, EOFError, zlib.error) as e:  # gzip's BadGzipFile is an OSError
        reason = getattr(e, "strerror", None) or f"damaged compressed file ({e})"
        raise ConfigurationError("data", f"cannot read {path}: {reason}") from None
    return False


def load_history(
    data: Data,
    *,
    symbol: str | None = None,
    interval: str | None = None,
) -> History:
    """Read ``data`` into bars or stored market events for one symbol.

    Bars (candles, bars given) are resampled when ``interval`` is a multiple of theirs.
    Market events (recordings, event stores) make bars of ``interval`` (1m if ``None``);
    the book of a recording is rebuilt with the collector's synchronizer, so each depth
    event carries the top of book the live collector would have stored.

    Raises:
        ConfigurationError: the data cannot be read, or does not fit the options.
    """
    wanted = Interval.parse(interval) if interval else None
    if not isinstance(data, str | Path):
        bars = list(data)
        if not bars:
            raise ConfigurationError("data", "no bars given")
        name = symbol or bars[0].symbol
        bars = [b for b in bars if b.symbol == name]
        found = Interval.parse(bars[0].interval)
        return _bars_history(bars, name, found, wanted, "bars")
    events = market_events(data, symbol=symbol, interval=wanted)
    if events is not None:
        items = [item for page in events.pages() for item in page]
        assert events.symbol is not None  # pages() raises when no event was found
        return History("events", events.symbol, events.interval, items, events.source,
                       events.rejected, other_symbols=events.other_symbols)  # fmt: skip
    named = data_set(str(data))
    if named is not None:
        if symbol is not None and symbol.upper() != named[0]:
            raise ConfigurationError("symbol", f"{symbol} is not the data set's {named[0]}")
        candles, source = read_data_set(*named)
    else:
        candles, source = read_candles(Path(data), symbol=symbol), str(data)
    history = _bars_history(candles.bars, candles.symbol, candles.interval, wanted, source)
    history.rejected = candles.rejected
    return history


def _bars_history(
    bars: Sequence[BarClosed], symbol: str, found: Interval, wanted: Interval | None, source: str
) -> History:
    if wanted is None or wanted.nanos == found.nanos:
        return History("bars", symbol, found, bars, source)
    if wanted.nanos % found.nanos:
        raise ConfigurationError(
            "interval", f"{wanted.name} is not a multiple of the data's {found.name} bars"
        )
    return History("bars", symbol, wanted, list(resample(bars, wanted)), source)


def market_events(
    data: str | Path, *, symbol: str | None = None, interval: Interval | None = None
) -> MarketEvents | None:
    """Return the market events of ``data`` when it is a recording or an event store
    (``None`` for a file of candles).

    Raises:
        ConfigurationError: ``data`` is neither a store nor a readable file.
    """
    text = str(data)
    if is_store_url(text):
        return MarketEvents(text, symbol=symbol, interval=interval)
    if data_set(text) is not None:
        return None  # downloaded candles
    path = Path(text)
    if not path.is_file():
        raise ConfigurationError("data", f"{path} is not a file")
    return MarketEvents(path, symbol=symbol, interval=interval) if _is_recording(path) else None


def backtest(
    strategy: Strategy,
    data: Data | History | MarketEvents,
    *,
    symbol: str | None = None,
    interval: str | None = None,
    fee: Decimal | str = Decimal("0.001"),
    initial_cash: Decimal | str = Decimal(10_000),
    quantity: Decimal | str | None = None,
    price_source: PriceSource = "mid",
    on_progress: Callable[[int, int], None] | None = None,
    warmup: Sequence[BarClosed] = (),
) -> BacktestResult:
    """Run ``strategy`` over ``data`` the way the live processor and trader would.

    Args:
        strategy: a fresh strategy object (it keeps the state of one symbol).
        data: kline CSV path, recorded session path, event store URL, closed bars, a
            :class:`History` already loaded, or :class:`MarketEvents`. A recording or a
            store is run as it is read, a page at a time: memory does not grow with it.
        symbol: the symbol to test when the data holds several (default: the first).
        interval: bar length: 1m by default for recordings and stores; for candles and
            bars their own, or a multiple of it (resampled).
        fee: fee rate per fill, on the notional.
        initial_cash: quote currency at the start.
        quantity: fixed quantity per BUY; ``None`` invests all the cash.
        price_source: ``mid`` (top of book) or ``trade`` prices, for market events.
        on_progress: called with ``(done, total)`` every 65,536 bars or events (for a
            recording or a store: every page of 10,000, and ``total`` is 0: not known before
            the end is read).
        warmup: closed bars before ``data``, fed to the strategy first as the live
            processor's warm-up does: indicators filled, nothing traded or counted.

    Returns:
        The signals (ids as the live processor derives them), trades, equity curve and
        figures.
    """
    events = data if isinstance(data, MarketEvents) else None
    if events is None and isinstance(data, str | Path):
        wanted = Interval.parse(interval) if interval else None
        events = market_events(data, symbol=symbol, interval=wanted)
    pages: Iterator[list[tuple[Event, int]]] | None = None
    if events is not None:
        pages = events.pages()
        first = next(pages)  # chooses the symbol (pages() raises when it has no event)
        pages = chain((first,), pages)
        assert events.symbol is not None
        name, bar_interval = events.symbol, events.interval
    else:
        assert not isinstance(data, MarketEvents)
        history = data if isinstance(data, History) else load_history(
            data, symbol=symbol, interval=interval)  # fmt: skip
        name, bar_interval = history.symbol, history.interval
    pipeline = SymbolPipeline(name, bar_interval, strategy, price_source=price_source)
    tester = Backtester(
        pipeline,
        fee=Decimal(fee),
        initial_cash=Decimal(initial_cash),
        quantity=None if quantity is None else Decimal(quantity),
    )
    # The run allocates nothing cyclic; scanning a million live bars is waste.
    with codec.gc_paused():
        if warmup:
            pipeline.warm_up(warmup)
        if pages is not None:  # read as it goes: a page at a time, freed once run
            assert events is not None
            for page in pages:
                tester.run_events(page)
                if on_progress is not None:
                    on_progress(events.read, 0)
            return tester.result()
        items = history.items
        total = len(items)
        decided = None if warmup else _compiled_decisions(strategy, pipeline, items)
        if decided is not None:  # the same decisions, taken over the column of closes at once
            assert isinstance(items, BarColumns)
            tester.run_decided(items, decided, kernel=speedups.curve_kernel)
            if on_progress is not None:
                on_progress(total, total)
            return tester.result()
        run = tester.run_bars if history.kind == "bars" else tester.run_events
        if on_progress is None:
            run(items)  # type: ignore[arg-type]  # kind says which sequence it is
        else:
            for start in range(0, total, CHUNK):
                run(items[start : start + CHUNK])  # type: ignore[arg-type]
                on_progress(min(start + CHUNK, total), total)
        return tester.result()


def _compiled_decisions(
    strategy: Strategy, pipeline: SymbolPipeline, items: object
) -> list[tuple[int, Decision]] | None:
    """Return the SMA crossover's decisions over columns of bars by the compiled kernel,
    or ``None`` when it does not apply (not compiled, not columns, another strategy or a
    subclass, one already fed, or a pipeline that also reads other intervals)."""
    kernel = speedups.sma_crossover
    if (
        kernel is None
        or not isinstance(items, BarColumns)
        or type(strategy) is not SmaCrossover
        or not strategy.fresh
        or pipeline.decide != strategy.on_bar
    ):
        return None
    short, long = strategy.short.period, strategy.long.period
    sides = {1: Side.BUY, -1: Side.SELL}
    found = kernel(items.closes, short, long, EQUAL_WITHIN)
    return [(index, Decision(sides[side], fast, slow)) for index, side, fast, slow in found]


def synthetic_history(
    count: int, *, interval: str = "1d", symbol: str = "BTCUSDT", seed: int = 1
) -> History:
    """Return ``count`` bars of the seeded synthetic market, as history."""
    parsed = Interval.parse(interval)
    bars = list(
        synthetic_bars(
            count, interval_ns=parsed.nanos, interval=parsed.name, symbol=symbol, seed=seed
        )
    )
    return History("bars", symbol, parsed, bars, f"synthetic:{seed}")


def parity(
    data: str | Path,
    strategy_factory: Callable[[], Strategy],
    *,
    interval: str,
    symbol: str | None = None,
    price_source: PriceSource = "mid",
) -> ParityResult:
    """Run a recording through the live path and through :func:`backtest`; compare.

    The live path is the services' own code: a :class:`Collector` stores the replayed
    session in an event store, a :class:`ProcessorService` follows the store (restoring,
    building bars, running the strategy, storing bars and signals) and an
    :class:`OutboxRelay` publishes the stored signals on a bus. The signals compared are
    those published.
    """
    started = time.monotonic()
    events = market_events(data, symbol=symbol, interval=Interval.parse(interval))
    if events is None or events.store:
        raise ConfigurationError("data", f"{data} is not a recording: parity replays one")
    result = backtest(strategy_factory(), events, price_source=price_source)  # read as it goes
    assert events.symbol is not None  # the backtest found the symbol's events, or raised
    live = anyio.run(_live_signals, Path(data), events.symbol, events.interval,
                     strategy_factory, price_source)  # fmt: skip
    return ParityResult(
        live, list(result.signals), events.symbol, events.read, time.monotonic() - started
    )


async def _live_signals(
    path: Path,
    symbol: str,
    interval: Interval,
    strategy_factory: Callable[[], Strategy],
    price_source: PriceSource,
) -> list[SignalEmitted]:
    with tempfile.TemporaryDirectory(prefix="algotrade-parity-") as directory:
        # The default store of the services, on disk: a long session needs no memory of its size.
        store = SqliteEventStore(Path(directory) / "parity.db")
        try:
            feed = ReplayFeed(path, symbols=[symbol])
            core = Processor(interval, strategy_factory, price_source=price_source)
            return await live_path(store, feed, core, SystemClock(), speedups.synchronizer)
        finally:
            await store.close()
