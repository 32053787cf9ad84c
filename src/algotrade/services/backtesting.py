"""Backtesting's use cases: history of one symbol, run through the live code, and the
live services' own path (collector, processor, outbox relay) over a market feed.

The files and stores history comes from are read by the entry point
(:mod:`algotrade.apps.backtesting`); what is here works on domain types and ports only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio

from algotrade.domain.bars import Interval
from algotrade.domain.book import BookSynchronizer
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed, Event, SignalEmitted
from algotrade.domain.ports import Clock, EventStore, MarketFeed, RejectedInput
from algotrade.domain.processing import Processor
from algotrade.services.collector import Collector
from algotrade.services.processor import MARKET_TYPES, OutboxRelay, ProcessorService

Kind = Literal["bars", "events"]


@dataclass
class History:
    """History ready for a backtest: bars or stored market events, for one symbol."""

    kind: Kind
    symbol: str
    interval: Interval
    items: Sequence[BarClosed] | Sequence[tuple[Event, int]]
    source: str
    rejected: list[RejectedInput] = field(default_factory=list)
    other_symbols: set[str] = field(default_factory=set)


class SymbolChoice:
    """Which symbol's events a history keeps: the one asked for, or the first one met; the
    other symbols met are noted."""

    def __init__(self, asked: str | None) -> None:
        self.symbol = asked
        self.others: set[str] = set()

    def keeps(self, event: Event) -> bool:
        name: str | None = getattr(event, "symbol", None)
        if name is None:
            return False
        if self.symbol is None:
            self.symbol = name
        if name == self.symbol:
            return True
        self.others.add(name)
        return False

    def chosen(self, read: int, where: str) -> str:
        """Return the symbol, or say why there is nothing to test."""
        if self.symbol is None:
            raise ConfigurationError("data", f"no market event {where}")
        if not read:
            held = f" (it holds {', '.join(sorted(self.others))})" if self.others else ""
            raise ConfigurationError("data", f"no market event of {self.symbol} {where}{held}")
        return self.symbol


async def store_history(
    store: EventStore, *, symbol: str | None, interval: Interval, source: str = "store"
) -> History:
    """Read a store's market events for one symbol (the first one stored by default) into
    memory; a backtest given the store's URL reads them as it goes instead."""
    choice = SymbolChoice(symbol.upper() if symbol else None)
    items: list[tuple[Event, int]] = []
    after = 0
    while batch := await store.read_all(after, limit=10_000, types=MARKET_TYPES, levels=False):
        items.extend((s.event, s.position) for s in batch if choice.keeps(s.event))
        after = batch[-1].position
    name = choice.chosen(len(items), f"stored in {source}")
    return History("events", name, interval, items, source, other_symbols=choice.others)


@dataclass
class ParityResult:
    """The two signal lists of :func:`parity` and where they differ."""

    live: list[SignalEmitted]
    backtest: list[SignalEmitted]
    symbol: str
    events: int
    seconds: float

    @property
    def identical(self) -> bool:
        """Return whether both paths gave the same signals, ids and fields alike."""
        return self.live == self.backtest

    def differences(self, limit: int = 10) -> list[str]:
        """Describe the first differences, one line each."""
        out = []
        for i, (a, b) in enumerate(zip(self.live, self.backtest, strict=False)):
            if a != b:
                out.append(f"signal {i + 1}: live {_brief(a)} != backtest {_brief(b)}")
        if len(self.live) != len(self.backtest):
            out.append(f"live has {len(self.live)} signals, backtest {len(self.backtest)}")
        return out[:limit]


def _brief(s: SignalEmitted) -> str:
    return f"{s.side} at {s.price} bar {s.bar_time} id {s.signal_id}"


async def live_path(
    store: EventStore,
    feed: MarketFeed,
    core: Processor,
    clock: Clock,
    synchronizer: Callable[..., BookSynchronizer] = BookSynchronizer,
) -> list[SignalEmitted]:
    """Collect ``feed`` into ``store`` while a processor follows it; return what its outbox
    relay published."""
    bus = _Published()
    relay = OutboxRelay(store, bus, clock=clock)
    processor = ProcessorService(store, core, clock=clock, on_signals=relay.notify)
    collector = Collector(feed, store, clock, synchronizer=synchronizer)
    following, relaying = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: processor.follow(following, idle=0.01))
        tg.start_soon(relay.run, relaying)
        await collector.run(anyio.Event())  # ends with the recording, everything stored
        following.set()
        await processor.catch_up()  # whatever the follower had not reached when stopped
        relay.notify()
        relaying.set()  # the relay publishes what is left, then returns
    return bus.signals


class _Published:
    """A signal publisher that keeps what it is given, in order."""

    def __init__(self) -> None:
        self.signals: list[SignalEmitted] = []

    async def publish(self, signals: Sequence[SignalEmitted]) -> None:
        self.signals.extend(signals)
