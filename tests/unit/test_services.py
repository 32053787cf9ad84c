"""Collector, processor and trader wired on in-memory adapters: one order per signal, always."""

from __future__ import annotations

import itertools
import sys
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from algotrade.adapters.memory import InMemoryEventStore, InMemorySignalBus, SystemClock
from algotrade.adapters.store_bus import PaperGateway, StoreQuoteSource, StoreSignalConsumer
from algotrade.adapters.synthetic import SyntheticFeed
from algotrade.apps.bootstrap import bootstrap_run
from algotrade.apps.common import SourceSpec
from algotrade.apps.logs import configure_logging
from algotrade.apps.runner import run_pipeline
from algotrade.apps.settings import FeedSettings, RunSettings, StrategySettings
from algotrade.apps.wiring import synthetic_starts
from algotrade.domain.bars import Interval
from algotrade.domain.errors import StoreError
from algotrade.domain.events import (
    DepthDiffReceived,
    Event,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    PositionChanged,
    SignalEmitted,
)
from algotrade.domain.ports import Tracking
from algotrade.domain.values import Side
from algotrade.services.collector import Collector
from algotrade.services.processor import MARKET_TYPES, ProcessorService
from algotrade.services.trader import TraderService

pytestmark = pytest.mark.anyio

E = TypeVar("E", bound=Event)

STRATEGY = StrategySettings(Interval.parse("1m"), 3, 8)


def settings() -> RunSettings:
    """Return run settings for a fast synthetic run."""
    return RunSettings(
        feed=FeedSettings(SourceSpec("synthetic")), strategy=STRATEGY, progress=False
    )


async def collect(store: InMemoryEventStore, events: int, seed: int = 7) -> None:
    """Collect ``events`` synthetic events into ``store``."""
    starts = await synthetic_starts(store, ["BTCUSDT"])
    feed = SyntheticFeed(["BTCUSDT"], seed=seed, limit=events, starts=starts)
    await Collector(feed, store, SystemClock()).run(anyio.Event())


async def signals_of_a_market(store: InMemoryEventStore) -> list[SignalEmitted]:
    """Collect a synthetic market into ``store``, process it; return the stored signals."""
    await collect(store, 100_000)
    processor = ProcessorService(store, STRATEGY.processor(), clock=SystemClock())
    await processor.handle(await store.read_all(0, limit=10**9, types=MARKET_TYPES))
    return await stored(store, SignalEmitted)


async def stored(store: InMemoryEventStore, kind: type[E]) -> list[E]:
    """Return every stored event of one type."""
    return [
        s.event
        for s in await store.read_all(0, limit=10**9, types=(kind,))
        if isinstance(s.event, kind)
    ]


async def test_run_gives_exactly_one_order_per_signal() -> None:
    """In one process: N crossovers in, N orders out, sides alternating, nothing pending."""
    store = InMemoryEventStore()
    feed = SyntheticFeed(["BTCUSDT"], seed=3, limit=150_000)
    pipeline = await bootstrap_run(settings(), store=store, feed=feed)
    summary = await run_pipeline(pipeline, settings())
    signals = await stored(store, SignalEmitted)
    placed = await stored(store, OrderPlaced)
    outcomes = await stored(store, OrderFilled) + await stored(store, OrderRejected)
    assert len(signals) >= 4
    assert summary["signals"] == len(signals) == len(placed) == len(outcomes)
    assert Counter(o.signal_id for o in placed) == Counter(s.signal_id for s in signals)
    sides = [s.side for s in signals]
    assert all(a is not b for a, b in itertools.pairwise(sides))
    assert pipeline.bus is not None
    assert pipeline.bus.pending == 0
    assert pipeline.bus.backlog == 0
    assert summary["events"] == feed.produced
    # Everything but the diffs that the first snapshot already contains is stored.
    market = await store.read_all(0, limit=10**9, types=MARKET_TYPES)
    assert summary["stored"] == len(market) >= feed.produced - 2


async def test_redelivered_signal_never_becomes_a_second_order() -> None:
    """A signal delivered again (lost ack, second trader) only gets acknowledged."""
    store = InMemoryEventStore()
    signals = await signals_of_a_market(store)
    assert len(signals) >= 2
    bus = InMemorySignalBus()
    trader = TraderService(store, bus, PaperGateway(StoreQuoteSource(store)), clock=SystemClock())
    await bus.publish(signals)
    deliveries = await bus.receive(100, 0.1)
    for d in deliveries:
        await trader.act(d.signal)  # acted upon, but the trader "dies" before acking
    bus.redeliver_pending()
    second = TraderService(store, bus, PaperGateway(StoreQuoteSource(store)), clock=SystemClock())
    await second.handle(await bus.receive(100, 0.1))
    assert len(await stored(store, OrderPlaced)) == len(signals)
    assert second.stats.redelivered == len(signals)
    assert bus.pending == 0


async def test_processor_restart_reproduces_signals_without_duplicates() -> None:
    """Processing in two runs with a restart in between equals one uninterrupted run."""
    store = InMemoryEventStore()
    await collect(store, 100_000)
    market = await store.read_all(0, limit=10**9, types=MARKET_TYPES)

    reference = InMemoryEventStore()
    await reference.append([s.event for s in market])
    whole = ProcessorService(reference, STRATEGY.processor(), clock=SystemClock())
    await whole.handle(await reference.read_all(0, limit=10**9, types=MARKET_TYPES))
    expected = [s.signal_id for s in await stored(reference, SignalEmitted)]
    assert len(expected) >= 2

    first = ProcessorService(store, STRATEGY.processor(), clock=SystemClock())
    await first.handle(market[: len(market) // 2])
    resumed_from = await store.tracking_position(first.tracking_name)
    assert 0 < resumed_from < market[len(market) // 2].position
    second = ProcessorService(store, STRATEGY.processor(), clock=SystemClock())
    rest = await store.read_all(resumed_from, limit=10**9, types=MARKET_TYPES)
    await second.handle(rest)
    assert [s.signal_id for s in await stored(store, SignalEmitted)] == expected


async def test_trader_follows_the_store_and_resumes_after_ack() -> None:
    """A store-following trader acts on every signal once, across a restart."""
    store = InMemoryEventStore()
    signals = await signals_of_a_market(store)
    gateway = PaperGateway(StoreQuoteSource(store), fee_rate=Decimal(0))
    first = TraderService(
        store, StoreSignalConsumer(store, poll=0.01), gateway, batch_size=1, clock=SystemClock()
    )
    await first.handle(await first.consumer.receive(1, 0.1))
    second = TraderService(
        store, StoreSignalConsumer(store, poll=0.01), gateway, clock=SystemClock()
    )
    stop = anyio.Event()
    stop.set()
    await second.run(stop)
    placed = await stored(store, OrderPlaced)
    assert [o.signal_id for o in placed] == [s.signal_id for s in signals]
    assert second.stats.redelivered == 0
    assert second.stats.orders == len(signals) - 1


async def test_synthetic_collection_continues_the_stored_series() -> None:
    """A second synthetic run on the same store continues the series: later time, later ids."""
    store = InMemoryEventStore()
    await collect(store, 5_000)
    first_last = await store.last_event("depth-BTCUSDT")
    await collect(store, 5_000)
    depth = list(await stored(store, DepthDiffReceived))
    assert isinstance(first_last, DepthDiffReceived)
    later = [e for e in depth if e.exchange_ts > first_last.exchange_ts]
    assert later
    assert all(e.first_update_id > first_last.final_update_id for e in later)
    times = [e.exchange_ts for e in depth]
    assert times == sorted(times)


def test_sides_are_enum_values() -> None:
    """Sides print as BUY and SELL."""
    assert [str(s) for s in Side] == ["BUY", "SELL"]


def test_a_summary_table_shows_a_dash_where_a_figure_does_not_apply(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A summary table shows '-' where a figure does not apply, and the JSON null."""
    from algotrade.apps.cli.exits import print_summary

    figures = {"signals": 1200, "published": None, "positions": {"BTCUSDT": {"mark": None}}}
    print_summary("processor summary", figures, as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[1:]] == [
        ["signals", "1,200"], ["published", "-"], ["positions", "BTCUSDT:"], ["mark", "-"]
    ]  # fmt: skip
    print_summary("processor summary", figures, as_json=True)
    assert '"published": null' in capsys.readouterr().out


def test_read_models_write_decimals_as_plain_text() -> None:
    """`orders`, `positions` and the summaries never print 0E-8 or 1E-7 for a decimal."""
    from algotrade.domain.values import decimal_text
    from algotrade.services.views import order_view, position_view

    assert str(Decimal("0E-8")) == "0E-8"  # what they printed before
    assert decimal_text(Decimal("0E-8")) == "0.00000000"
    assert decimal_text(Decimal("1E-7")) == "0.0000001"
    assert decimal_text(Decimal("1E+3")) == "1000"
    assert decimal_text(Decimal("29226.850")) == "29226.850"  # digits kept as they are
    position = PositionChanged(
        stream="position-BTCUSDT", version=2, exchange_ts=0, receive_ts=0, symbol="BTCUSDT",
        quantity=Decimal("0E-8"), average_price=Decimal(0), realised_pnl=Decimal("-1E-7"),
        fees_paid=Decimal("2.5E-7"), order_id="o",
    )  # fmt: skip
    view = position_view(position)
    assert (view["quantity"], view["realised_pnl"], view["fees_paid"]) == (
        "0.00000000", "-0.0000001", "0.00000025"
    )  # fmt: skip
    placed = OrderPlaced(
        stream="order-o", version=1, exchange_ts=0, receive_ts=0, order_id="o", signal_id="s",
        symbol="BTCUSDT", side=Side.BUY, quantity=Decimal("1E-5"),
    )  # fmt: skip
    filled = OrderFilled(
        stream="order-o", version=2, exchange_ts=0, receive_ts=0, order_id="o", signal_id="s",
        symbol="BTCUSDT", side=Side.BUY, quantity=Decimal("1E-5"), price=Decimal("30000.00"),
        fee=Decimal("3.0000E-4"),
    )  # fmt: skip
    view = order_view(placed, filled)
    assert (view["quantity"], view["executed"], view["fee"]) == ("0.00001", "0.00001", "0.00030000")


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["backtest", "--data", "{long}.csv"], "File name too long"),
        (["parity", "--data", "{long}.raw"], "File name too long"),
        (["report", "--synthetic", "--out", "{tmp}/{long}.html"], "File name too long"),
        (["report", "--synthetic", "--out", "{tmp}/missing/r.html"], "No such file"),
        (["run", "--source", "replay:{long}"], "--source (env var: ALGOTRADE_SOURCE): replay"),
        (["run", "--source", "replay:{tmp}"], "is not a regular file"),
        (["record", "--out", "{tmp}/{long}"], "--out: "),
        (["record", "--out", "{tmp}/missing/s.raw"], "--out: the directory of"),
        (["record", "--out", "{tmp}"], "is a directory"),
    ],
)
def test_a_file_the_os_refuses_is_a_one_line_error(
    args: list[str], shown: str, tmp_path: Path
) -> None:
    """A path option naming a file that cannot be used exits 2 with one line, no traceback
    (a replay name too long for the OS was found by the atheris fuzzer)."""
    from typer.testing import CliRunner

    from algotrade.apps import cli

    given = [a.format(long="x" * 300, tmp=tmp_path) for a in args]
    try:
        result = CliRunner().invoke(cli.app, given)
    finally:
        configure_logging(sys.stderr)  # a command logs into the runner's stream, closed after
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, OSError)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("algotrade: error: ")
    assert shown in lines[0]


class FlakyStore(InMemoryEventStore):
    """An in-memory store whose appends of orders fail ``failures`` times (a full disk, a
    lock held too long), then work again."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def append(self, events: Sequence[Event], *, tracking: Tracking | None = None) -> Any:
        if self.failures and any(isinstance(e, OrderPlaced) for e in events):
            self.failures -= 1
            raise StoreError("database or disk is full")
        return await super().append(events, tracking=tracking)


@pytest.mark.parametrize("failures", [1, 3])
async def test_a_store_following_trader_loses_no_signal_to_a_failed_store(
    failures: int,
) -> None:
    """Without Redis, the trader follows the store; a batch whose orders could not be
    stored comes back until they are, and the consumer's position never passes a signal
    that has no order (it used to move on at once, and the next ack recorded a position
    past the failed signals: they never got an order, even after a restart)."""
    store = FlakyStore(failures=0)
    signals = await signals_of_a_market(store)
    assert len(signals) >= 4
    store.failures = failures
    consumer = StoreSignalConsumer(store, poll=0.01)
    trader = TraderService(
        store, consumer, PaperGateway(StoreQuoteSource(store)), batch_size=2, clock=SystemClock()
    )
    stop = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(trader.run, stop)
            while len(await stored(store, OrderPlaced)) < len(signals):
                await anyio.sleep(0.02)
            stop.set()
    assert store.failures == 0
    placed = await stored(store, OrderPlaced)
    assert Counter(o.signal_id for o in placed) == Counter(s.signal_id for s in signals)
    last = max(p.position for p in await store.read_all(0, limit=10**9, types=(SignalEmitted,)))
    assert await store.tracking_position(consumer.name) == last


def numbered_signal(i: int) -> SignalEmitted:
    """Return the i-th of a series of signals (alternating sides)."""
    return SignalEmitted(
        stream="signals-BTCUSDT-1m-t", version=i + 1, exchange_ts=i, receive_ts=i,
        signal_id=f"s{i}", symbol="BTCUSDT", interval="1m",
        side=Side.BUY if i % 2 == 0 else Side.SELL, price=Decimal(100), short_sma=1.0,
        long_sma=2.0, bar_time=i, strategy="t",
    )  # fmt: skip


async def test_the_store_consumer_never_records_a_position_past_an_unacknowledged_signal() -> None:
    """Acknowledging the 1st, 3rd and 4th of four: the position stays before the 2nd, which
    comes back (with the 3rd and 4th, in order) after a back-off, one attempt more; a
    restarted consumer starts at the 2nd as well."""
    store = InMemoryEventStore()
    signals = [numbered_signal(i) for i in range(4)]
    await store.append(signals)
    consumer = StoreSignalConsumer(store, poll=0.01)
    first = await consumer.receive(10, 0.1)
    assert [(d.signal.signal_id, d.attempt) for d in first] == [(f"s{i}", 1) for i in range(4)]
    await consumer.ack([first[0], first[2], first[3]])  # the 2nd failed
    assert await store.tracking_position(consumer.name) == int(first[0].token)
    assert await consumer.receive(10, 0.0) == []  # backing off
    restarted = StoreSignalConsumer(store, poll=0.01)
    assert [d.signal.signal_id for d in await restarted.receive(10, 0.1)] == ["s1", "s2", "s3"]
    await anyio.sleep(0.05)
    again = await consumer.receive(10, 0.1)
    assert [(d.signal.signal_id, d.attempt) for d in again] == [("s1", 2), ("s2", 2), ("s3", 2)]
    await consumer.ack(again)
    assert await store.tracking_position(consumer.name) == int(again[-1].token)
    assert await consumer.receive(10, 0.05) == []  # nothing left, nothing handed out again


async def test_run_acts_on_every_signal_despite_a_failed_store() -> None:
    """`algotrade run`'s in-process bus hands a batch the trader could not store out again
    (it stayed pending for good, its signals without orders)."""
    store = FlakyStore(failures=2)
    feed = SyntheticFeed(["BTCUSDT"], seed=3, limit=150_000)
    pipeline = await bootstrap_run(settings(), store=store, feed=feed)
    summary = await run_pipeline(pipeline, settings())
    assert store.failures == 0
    signals = await stored(store, SignalEmitted)
    placed = await stored(store, OrderPlaced)
    assert len(signals) >= 4
    assert Counter(o.signal_id for o in placed) == Counter(s.signal_id for s in signals)
    assert summary["orders"] == len(signals)
    assert pipeline.bus is not None
    assert pipeline.bus.pending == 0


async def test_run_starts_by_acting_on_stored_signals_without_an_order() -> None:
    """A run killed between storing a signal and storing its order: the next run places
    that order first (the in-process bus forgot the signal with the process)."""
    store = InMemoryEventStore()
    orphans = await signals_of_a_market(store)
    assert len(orphans) >= 2
    starts = await synthetic_starts(store, ["BTCUSDT"])
    feed = SyntheticFeed(["BTCUSDT"], seed=7, limit=1_000, starts=starts)
    pipeline = await bootstrap_run(settings(), store=store, feed=feed)
    await run_pipeline(pipeline, settings())
    placed = await stored(store, OrderPlaced)
    assert [o.signal_id for o in placed][: len(orphans)] == [s.signal_id for s in orphans]
    assert Counter(o.signal_id for o in placed) == Counter(
        s.signal_id for s in await stored(store, SignalEmitted)
    )


def test_an_algotrade_error_in_a_task_group_is_reported_but_not_beside_a_bug() -> None:
    """What ends a run inside task groups is reported in one line when it is an algotrade
    error (beside the cancellations it caused); anything else keeps its traceback."""
    import asyncio

    from algotrade.apps.cli.exits import reportable
    from algotrade.domain.errors import RecorderError

    failure = RecorderError("cannot write the recording 'x': No space left on device")
    nested = BaseExceptionGroup("outer", [ExceptionGroup("inner", [failure])])
    assert reportable(nested) is failure
    assert reportable(BaseExceptionGroup("g", [asyncio.CancelledError(), failure])) is failure
    assert reportable(ExceptionGroup("g", [failure, ValueError("a bug")])) is None
    assert reportable(ExceptionGroup("g", [ValueError("a bug")])) is None
    assert reportable(failure) is failure


@hypothesis_settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_store_consumer_passes_no_signal_whatever_is_acknowledged(data: st.DataObject) -> None:
    """Any batch sizes, any subset acknowledged each time: the recorded position never
    passes a signal that was not acknowledged, and once everything handed out is
    acknowledged, every signal has been acknowledged and the position is the last one."""
    count = data.draw(st.integers(1, 12), label="signals")

    async def scenario() -> None:
        store = InMemoryEventStore()
        await store.append([numbered_signal(i) for i in range(count)])
        consumer = StoreSignalConsumer(store, poll=0.0001, max_retry_wait=0.001)
        acked: set[str] = set()
        for _ in range(200):
            batch = await consumer.receive(data.draw(st.integers(1, 5), label="batch"), 0.01)
            if not batch:
                if len(acked) == count:
                    break
                continue
            chosen = data.draw(st.lists(st.sampled_from(batch), unique_by=id), label="ack")
            await consumer.ack(chosen)
            acked.update(d.signal.signal_id for d in chosen)
            position = await store.tracking_position(consumer.name)
            passed = {s.event.signal_id for s in await store.read_all(0, limit=100)
                      if isinstance(s.event, SignalEmitted) and s.position <= position}  # fmt: skip
            assert passed <= acked  # the position never passes an unacknowledged signal
        for _ in range(200):  # then everything handed out is acknowledged
            batch = await consumer.receive(5, 0.01)
            if not batch and len(acked) == count:
                break
            await consumer.ack(batch)
            acked.update(d.signal.signal_id for d in batch)
        assert acked == {f"s{i}" for i in range(count)}
        assert await store.tracking_position(consumer.name) == count

    anyio.run(scenario)


@hypothesis_settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_in_process_bus_loses_no_signal_whatever_is_acknowledged(data: st.DataObject) -> None:
    """`algotrade run`'s bus: any batch sizes, any subset acknowledged each time; what is
    not acknowledged comes back first, in order, until every signal is acknowledged."""
    count = data.draw(st.integers(1, 12), label="signals")

    async def scenario() -> None:
        bus = InMemorySignalBus(retry_wait=0.0001, max_retry_wait=0.001)
        await bus.publish([numbered_signal(i) for i in range(count)])
        acked: set[str] = set()
        for phase in ("any", "all"):  # any acknowledgements, then everything handed out
            for _ in range(50 if phase == "any" else 400):
                batch = await bus.receive(data.draw(st.integers(1, 5), label="batch"), 0.01)
                if not batch:
                    if len(acked) == count:
                        break
                    continue
                unacked = [s for s in (f"s{i}" for i in range(count)) if s not in acked]
                assert batch[0].signal.signal_id == unacked[0]  # the oldest one first
                chosen = list(batch)
                if phase == "any":
                    chosen = data.draw(st.lists(st.sampled_from(batch), unique_by=id))
                await bus.ack(chosen)
                acked.update(d.signal.signal_id for d in chosen)
        assert acked == {f"s{i}" for i in range(count)}
        assert bus.pending == 0

    anyio.run(scenario)
