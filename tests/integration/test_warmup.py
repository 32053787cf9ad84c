"""Warm-up from history: klines from the (fake) exchange fill the strategy before its
first bar, the same after a restart, and a missing history only delays the signals."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal

import pytest

from algotrade.adapters.binance.klines import BinanceKlines
from algotrade.adapters.memory import InMemoryEventStore, SystemClock
from algotrade.domain.bars import Interval
from algotrade.domain.errors import MessagingError
from algotrade.domain.events import BarClosed, BookSnapshotTaken, Event, SignalEmitted
from algotrade.domain.processing import Processor
from algotrade.domain.strategy import SmaCrossover
from algotrade.domain.values import TopOfBook
from algotrade.services.processor import ProcessorService
from tests.support.fake_binance import FakeBinance, kline_close

pytestmark = pytest.mark.anyio
MINUTE = 60 * 10**9
NOW_NS = 1_764_000_000 * 10**9  # 2025-11-24, a whole minute


async def test_klines_are_paged_backwards_and_end_before_the_first_bar() -> None:
    """1,500 one-minute klines take two requests; the last closes at the asked bound."""
    async with FakeBinance(("BTCUSDT",), rate=1.0) as fake:
        history = BinanceKlines(fake.rest_url)
        bars = await history.bars_before("BTCUSDT", Interval.parse("1m"), NOW_NS, 1500)
    assert len(bars) == 1500
    assert len(fake.kline_requests) == 2
    assert bars[-1].close_time == NOW_NS
    assert all(b.open_time + MINUTE == n.open_time for b, n in itertools.pairwise(bars))
    first = bars[0]
    expected = kline_close("BTCUSDT", first.open_time // 10**6, 60_000)
    assert first.close == Decimal(f"{expected:.2f}")


async def test_rate_limits_are_waited_out_and_failures_are_clear() -> None:
    """A 429 is waited out for its Retry-After, and a history that stays unavailable is an error
    naming the klines."""
    async with FakeBinance(("BTCUSDT",), rate=1.0) as fake:
        fake.fail_rest(429, retry_after=0.1)
        history = BinanceKlines(fake.rest_url)
        bars = await history.bars_before("BTCUSDT", Interval.parse("1d"), NOW_NS, 10)
        assert len(bars) == 10
        with pytest.raises(MessagingError, match="HTTP 400"):
            await history.bars_before("NOPE", Interval.parse("1d"), NOW_NS, 10)
        assert await history.bars_before("BTCUSDT", Interval.parse("7m"), NOW_NS, 10) == []


def snapshots(count: int, start_ns: int, step_ns: int = MINUTE) -> list[Event]:
    """Book snapshots one bar apart, mid prices on the fake exchange's wave, continued."""
    out: list[Event] = []
    for i in range(count):
        ts = start_ns + i * step_ns
        mid = Decimal(f"{kline_close('BTCUSDT', ts // 10**6, 60_000):.2f}")
        out.append(
            BookSnapshotTaken(
                stream="depth-BTCUSDT", version=i + 1, exchange_ts=ts, receive_ts=ts,
                exchange="binance", symbol="BTCUSDT", last_update_id=i + 1, bids=(), asks=(),
                top=TopOfBook(mid - Decimal("0.01"), Decimal(1), mid + Decimal("0.01"),
                              Decimal(1)),
            )
        )  # fmt: skip
    return out


async def process(
    store: InMemoryEventStore, history: BinanceKlines | None, events: Sequence[Event]
) -> list[SignalEmitted]:
    await store.append(list(events))
    service = ProcessorService(
        store,
        Processor(Interval.parse("1m"), lambda: SmaCrossover(5, 40)),
        history=history,
        clock=SystemClock(),
    )
    await service.catch_up()
    found = await store.read_all(0, limit=10**9, types=(SignalEmitted,))
    return [s.event for s in found if isinstance(s.event, SignalEmitted)]


def start_with_an_early_crossover() -> int:
    """Return a start minute where the wave crosses within the first 40 live bars."""
    for offset in range(0, 400):
        start = NOW_NS + offset * MINUTE
        strategy = SmaCrossover(5, 40)
        decisions = []
        for i in range(-40, 40):
            ts_ms = (start + i * MINUTE) // 10**6
            close = Decimal(f"{kline_close('BTCUSDT', ts_ms, 60_000):.2f}")
            decisions.append(i >= 1 and strategy.update(float(close)) is not None)
            if i < 1:
                strategy.update(float(close))
        if any(decisions):
            return start
    raise AssertionError("the wave never crosses")


async def test_the_processor_warms_up_and_a_restart_gives_the_same_signals() -> None:
    """With warm-up, signals come from the first bars on; without, only after 40 bars.

    A restarted processor (same store) fetches the same history and re-derives the same
    ids: nothing new is stored.
    """
    start = start_with_an_early_crossover()
    market = snapshots(60, start)
    async with FakeBinance(("BTCUSDT",), rate=1.0) as fake:
        warm = InMemoryEventStore()
        signals = await process(warm, BinanceKlines(fake.rest_url), market)
        assert fake.kline_requests[0]["endTime"] == str(start // 10**6 - 1)
        cold = await process(InMemoryEventStore(), None, market)
        early = [s for s in signals if s.bar_time < start + 40 * MINUTE]
        assert early, "the warmed-up strategy decides within its first 40 bars"
        assert all(s.bar_time >= start + 40 * MINUTE for s in cold)
        assert {s.signal_id for s in cold} <= {s.signal_id for s in signals}
        head = await warm.head()
        again = ProcessorService(
            warm,
            Processor(Interval.parse("1m"), lambda: SmaCrossover(5, 40)),
            history=BinanceKlines(fake.rest_url),
            clock=SystemClock(),
        )
        await warm.append(snapshots(61, start)[-1:])  # one more bar closes the 60th
        await again.catch_up()
        after = await warm.read_all(0, limit=10**9, types=(SignalEmitted, BarClosed))
        assert len([s for s in after if isinstance(s.event, SignalEmitted)]) >= len(signals)
        restarted = [s.event.signal_id for s in after if isinstance(s.event, SignalEmitted)]
        assert restarted[: len(signals)] == [s.signal_id for s in signals]
        assert await warm.head() > head


async def test_unreachable_history_only_delays_the_signals() -> None:
    """No exchange: a warning, and the strategy warms up on live bars as before."""
    market = snapshots(60, NOW_NS)
    signals = await process(
        InMemoryEventStore(), BinanceKlines("http://127.0.0.1:9", attempts=1), market
    )
    cold = await process(InMemoryEventStore(), None, market)
    assert [s.signal_id for s in signals] == [s.signal_id for s in cold]
