"""A synthetic market: a seeded random walk producing Binance-shaped depth diffs and trades.

Every ``step`` of market time each symbol's mid price moves by a Gaussian number of ticks
(volatility given per day). The generator keeps a real order book of ``depth`` levels a
side and emits the diffs that move it: the new best levels, the levels the move crossed
(quantity zero), a few quantity changes further down, and a few trades (two per diff on
average). Update ids are contiguous like Binance's (``U`` = previous ``u + 1``), a
snapshot comes whenever one is requested, and the same seed and start give the same
events.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import anyio

from algotrade.domain.events import (
    BarClosed,
    BookSnapshotTaken,
    DepthDiffReceived,
    MarketEvent,
    TradeReceived,
)
from algotrade.domain.ports import RejectedInput
from algotrade.domain.streams import bar_stream, depth_stream, trade_stream
from algotrade.domain.values import PriceLevel

EXCHANGE = "synthetic"
DEFAULT_START_NS = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
_DAY_NS = 86_400 * 1_000_000_000
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SyntheticStart:
    """Where a symbol's walk begins: market time, next update id, mid price, next trade id."""

    time_ns: int = DEFAULT_START_NS
    update_id: int = 1_000_000
    price: Decimal = Decimal(30000)
    trade_id: int = 1


#: The quantities a walk draws from, one table for every walk.
_QUANTITIES = [Decimal(n).scaleb(-5) for n in range(1, 200_001, 397)]
#: Price of each tick count, by tick size, shared by the walks (emptied past the bound).
_PRICES: dict[Decimal, dict[int, Decimal]] = {}
_MAX_PRICES = 200_000


class _Walk:
    """One symbol's random walk and book, in integer ticks (sorted lists, best at the inside)."""

    def __init__(
        self,
        symbol: str,
        start: SyntheticStart,
        *,
        seed: int,
        step_ns: int,
        tick: Decimal,
        daily_volatility: float,
        depth: int,
        trades_per_step: float,
        deep_updates: int,
    ) -> None:
        self.symbol = symbol
        self.deep_updates = deep_updates
        self.rng = random.Random(f"{seed}:{symbol}:{start.time_ns}")
        self.step_ns = step_ns
        self.tick = tick
        self.depth = depth
        self.trade_probability = trades_per_step / (1.0 + trades_per_step)
        self.time = start.time_ns
        self.update_id = start.update_id
        self.trade_id = start.trade_id
        mid = int(start.price / tick)
        steps_per_day = _DAY_NS / step_ns
        per_step = float(start.price) * daily_volatility / math.sqrt(steps_per_day)
        self.sigma = max(0.5, per_step / float(tick))
        self.depth_stream = depth_stream(symbol)
        self.trade_stream = trade_stream(symbol)
        # Shared by every walk of the same tick: a price is one Decimal whatever the symbol,
        # and a symbol costs its book, not its own cache (500 symbols held 70 KiB each).
        self._prices = _PRICES.setdefault(tick, {})
        self._qtys = _QUANTITIES
        # Both ascending: the best bid is bids[-1], the best ask asks[0].
        self.bids = [mid - 1 - 2 * i for i in reversed(range(depth))]
        self.asks = [mid + 1 + 2 * i for i in range(depth)]
        self.qty: dict[int, Decimal] = {t: self._qty() for t in (*self.bids, *self.asks)}

    def _price(self, ticks: int) -> Decimal:
        price = self._prices.get(ticks)
        if price is None:
            if len(self._prices) > _MAX_PRICES:
                self._prices.clear()
            price = self._prices[ticks] = Decimal(ticks) * self.tick
        return price

    def _qty(self) -> Decimal:
        qtys = self._qtys
        return qtys[int(self.rng.random() * len(qtys))]

    def snapshot(self) -> BookSnapshotTaken:
        """Return the current book as a REST-style snapshot."""
        price, qty = self._price, self.qty
        return BookSnapshotTaken(
            stream=self.depth_stream,
            version=0,
            exchange_ts=self.time,
            receive_ts=self.time + 5_000_000,
            exchange=EXCHANGE,
            symbol=self.symbol,
            last_update_id=self.update_id - 1,
            bids=tuple((price(t), qty[t]) for t in reversed(self.bids)),
            asks=tuple((price(t), qty[t]) for t in self.asks),
        )

    def step(self, out: list[MarketEvent]) -> None:
        """Advance one step; append the diff (and maybe trades) to ``out``."""
        # The simulated exchange runs on the same core as the pipeline it feeds, so this
        # loop inlines its helpers: prices come from a cache, quantities from a table.
        rng = self.rng
        random_ = rng.random
        self.time += self.step_ns
        bids, asks, qty = self.bids, self.asks, self.qty
        prices, new_price = self._prices, self._price
        qtys = self._qtys
        nq = len(qtys)
        zero = _ZERO
        bid_changes: list[PriceLevel] = []
        ask_changes: list[PriceLevel] = []
        new_bid = bids[-1] + round(rng.gauss(0.0, self.sigma))
        new_ask = new_bid + 1 + (random_() < 0.3)
        # Levels the move crossed disappear.
        k = bisect_left(asks, new_ask)
        if k:
            for t in asks[:k]:
                ask_changes.append((prices.get(t) or new_price(t), zero))
                del qty[t]
            del asks[:k]
        k = bisect_right(bids, new_bid)
        if k < len(bids):
            for t in bids[k:]:
                bid_changes.append((prices.get(t) or new_price(t), zero))
                del qty[t]
            del bids[k:]
        # The new inside levels.
        if not bids or bids[-1] != new_bid:
            bids.append(new_bid)
            q = qty[new_bid] = qtys[int(random_() * nq)]
            bid_changes.append((prices.get(new_bid) or new_price(new_bid), q))
        if not asks or asks[0] != new_ask:
            asks.insert(0, new_ask)
            q = qty[new_ask] = qtys[int(random_() * nq)]
            ask_changes.append((prices.get(new_ask) or new_price(new_ask), q))
        # Depth refills after a sweep, and quantity changes further down each side.
        if len(bids) < self.depth:
            t = bids[0] - 1 - int(random_() * 3)
            bids.insert(0, t)
            q = qty[t] = qtys[int(random_() * nq)]
            bid_changes.append((prices.get(t) or new_price(t), q))
        if len(asks) < self.depth:
            t = asks[-1] + 1 + int(random_() * 3)
            asks.append(t)
            q = qty[t] = qtys[int(random_() * nq)]
            ask_changes.append((prices.get(t) or new_price(t), q))
        for _ in range(self.deep_updates):
            t = bids[int(random_() * len(bids))]
            q = qty[t] = qtys[int(random_() * nq)]
            bid_changes.append((prices.get(t) or new_price(t), q))
            t = asks[int(random_() * len(asks))]
            q = qty[t] = qtys[int(random_() * nq)]
            ask_changes.append((prices.get(t) or new_price(t), q))
        while len(bids) > self.depth:
            t = bids.pop(0)
            del qty[t]
            bid_changes.append((prices.get(t) or new_price(t), zero))
        while len(asks) > self.depth:
            t = asks.pop()
            del qty[t]
            ask_changes.append((prices.get(t) or new_price(t), zero))
        first = self.update_id
        last = first + int(random_() * 4)
        self.update_id = last + 1
        out.append(
            DepthDiffReceived(
                stream=self.depth_stream,
                version=0,
                exchange_ts=self.time,
                receive_ts=self.time + 5_000_000,
                exchange=EXCHANGE,
                symbol=self.symbol,
                first_update_id=first,
                final_update_id=last,
                bids=tuple(bid_changes),
                asks=tuple(ask_changes),
            )
        )
        # Trades per step follow a geometric law with mean trades_per_step.
        while random_() < self.trade_probability:
            buyer_is_maker = random_() < 0.5
            t = bids[-1] if buyer_is_maker else asks[0]
            out.append(
                TradeReceived(
                    stream=self.trade_stream,
                    version=0,
                    exchange_ts=self.time,
                    receive_ts=self.time + 5_000_000,
                    exchange=EXCHANGE,
                    symbol=self.symbol,
                    trade_id=self.trade_id,
                    price=prices.get(t) or new_price(t),
                    quantity=qtys[int(random_() * nq)],
                    buyer_is_maker=buyer_is_maker,
                )
            )
            self.trade_id += 1


class SyntheticFeed:
    """A :class:`~algotrade.domain.ports.MarketFeed` of seeded random walks.

    Args:
        symbols: the symbols to simulate.
        seed: the random seed; with the same starts, the same events.
        starts: where each symbol begins (defaults: 2024-01-01, 30,000).
        step: market time between two diffs of a symbol, in nanoseconds (100 ms).
        daily_volatility: standard deviation of the daily return (0.03 is 3%).
        trades_per_step: mean number of trades after each diff.
        deep_updates: quantity changes below the top of each side in each diff.

    The defaults match the recorded BTCUSDT session in ``shared/data/binance``: about 11
    level changes per diff and 1.4 trades per diff.
        limit: stop once this many events were produced (``None``: never stop); the last
            batch may end a few events past it so that no diff is cut off.
        batch_size: events per yielded batch.
    """

    def __init__(
        self,
        symbols: Iterable[str] = ("BTCUSDT",),
        *,
        seed: int = 42,
        starts: dict[str, SyntheticStart] | None = None,
        step: int = 100_000_000,
        tick: Decimal = Decimal("0.01"),
        daily_volatility: float = 0.03,
        depth: int = 20,
        trades_per_step: float = 1.4,
        deep_updates: int = 3,
        limit: int | None = None,
        batch_size: int = 1000,
    ) -> None:
        self._symbols = tuple(s.upper() for s in symbols)
        starts = starts or {}
        self._walks = [
            _Walk(
                s,
                starts.get(s, SyntheticStart()),
                seed=seed,
                step_ns=step,
                tick=tick,
                daily_volatility=daily_volatility,
                depth=depth,
                trades_per_step=trades_per_step,
                deep_updates=deep_updates,
            )
            for s in self._symbols
        ]
        self._by_symbol = {w.symbol: w for w in self._walks}
        self._requested: list[str] = []
        self.limit = limit
        self.batch_size = batch_size
        self.produced = 0

    @property
    def symbols(self) -> tuple[str, ...]:
        """Return the simulated symbols."""
        return self._symbols

    @property
    def rejected(self) -> int:
        """Return zero: generated data is never malformed."""
        return 0

    def drain_rejects(self) -> list[RejectedInput]:
        """Return nothing: generated data is never malformed."""
        return []

    async def request_snapshot(self, symbol: str) -> None:
        """Queue a snapshot of ``symbol``, emitted after the next step."""
        if symbol in self._by_symbol and symbol not in self._requested:
            self._requested.append(symbol)

    async def batches(self) -> AsyncIterator[Sequence[MarketEvent]]:
        """Yield generated events until ``limit`` (forever without one)."""
        walks = self._walks
        while self.limit is None or self.produced < self.limit:
            batch: list[MarketEvent] = []
            want = self.batch_size
            if self.limit is not None:
                want = min(want, self.limit - self.produced)
            while len(batch) < want:
                for walk in walks:
                    walk.step(batch)
                if self._requested:
                    # Like Binance's REST snapshot: taken after some diffs were already sent.
                    for symbol in self._requested:
                        batch.append(self._by_symbol[symbol].snapshot())
                    self._requested.clear()
            self.produced += len(batch)
            yield batch
            await anyio.lowlevel.checkpoint()


def synthetic_bars(
    count: int,
    *,
    interval_ns: int = _DAY_NS,
    interval: str = "1d",
    symbol: str = "BTCUSDT",
    seed: int = 1,
    start_ns: int = DEFAULT_START_NS,
    price: float = 30_000.0,
    volatility: float = 0.03,
) -> Iterable[BarClosed]:
    """Yield ``count`` closed bars of a seeded random walk with drifting trends.

    Each bar's log return is Gaussian with standard deviation ``volatility``, plus a drift
    that changes sign at random every few dozen bars, so moving averages cross now and
    then as on a real market. Prices have two decimals; the same seed gives the same bars.
    """
    rng = random.Random(seed)
    stream = bar_stream(symbol, interval)
    home = level = math.log(price)
    drift = 0.0
    cents = Decimal("0.01")
    previous = Decimal(f"{price:.2f}")
    for i in range(count):
        if rng.random() < 0.02:
            drift = rng.gauss(0, volatility / 10)
        level += drift + rng.gauss(0, volatility) - 0.002 * (level - home)
        close = Decimal(f"{max(math.exp(level), 0.01):.2f}")
        spread = abs(close - previous)
        high = max(close, previous) + (spread / 4).quantize(cents)
        low = max(min(close, previous) - (spread / 4).quantize(cents), cents)
        open_time = start_ns + i * interval_ns
        yield BarClosed(
            stream=stream,
            version=i + 1,
            exchange_ts=open_time + interval_ns,
            receive_ts=open_time + interval_ns,
            symbol=symbol,
            interval=interval,
            open_time=open_time,
            close_time=open_time + interval_ns,
            open=previous,
            high=high,
            low=low,
            close=close,
            updates=1,
            last_position=0,
        )
        previous = close
