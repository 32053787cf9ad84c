"""A synthetic market: a seeded random walk producing Binance-shaped depth diffs and trades.

Every ``step`` of market time each symbol's mid price moves by a Gaussian number of ticks
(volatility given per day). The generator keeps a real order book of ``depth`` levels a
side and emits the diffs that move it: the new best levels, the levels the move crossed
(quantity zero), a few quantity changes further down, and now and then a trade. Update ids
are contiguous like Binance's (``U`` = previous ``u + 1``), a snapshot comes whenever one
is requested, and the same seed and start give the same events.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import anyio

from algotrade.domain.events import (
    BookSnapshotTaken,
    DepthDiffReceived,
    MarketEvent,
    PriceLevel,
    TradeReceived,
    depth_stream,
    trade_stream,
)
from algotrade.domain.ports import RejectedInput

EXCHANGE = "synthetic"
DEFAULT_START_NS = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
_DAY_NS = 86_400 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class SyntheticStart:
    """Where a symbol's walk begins: market time, next update id, mid price, next trade id."""

    time_ns: int = DEFAULT_START_NS
    update_id: int = 1_000_000
    price: Decimal = Decimal(30000)
    trade_id: int = 1


class _Walk:
    """One symbol's random walk and book, in integer ticks."""

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
        trade_probability: float,
    ) -> None:
        self.symbol = symbol
        self.rng = random.Random(f"{seed}:{symbol}:{start.time_ns}")
        self.step_ns = step_ns
        self.tick = tick
        self.depth = depth
        self.trade_probability = trade_probability
        self.time = start.time_ns
        self.update_id = start.update_id
        self.trade_id = start.trade_id
        mid = int(start.price / tick)
        steps_per_day = _DAY_NS / step_ns
        self.sigma = max(
            0.5, float(start.price) * daily_volatility / math.sqrt(steps_per_day) / float(tick)
        )
        self.depth_stream = depth_stream(symbol)
        self.trade_stream = trade_stream(symbol)
        self._prices: dict[int, Decimal] = {}
        self._qtys = [Decimal(n).scaleb(-4) for n in range(1, 50_001, 97)]
        self.bid = mid - 1
        self.ask = mid + 1
        self.bids: dict[int, Decimal] = {}
        self.asks: dict[int, Decimal] = {}
        for i in range(depth):
            self.bids[self.bid - i] = self._qty()
            self.asks[self.ask + i] = self._qty()

    def _price(self, ticks: int) -> Decimal:
        price = self._prices.get(ticks)
        if price is None:
            if len(self._prices) > 100_000:
                self._prices.clear()
            price = self._prices[ticks] = Decimal(ticks) * self.tick
        return price

    def _qty(self) -> Decimal:
        return self.rng.choice(self._qtys)

    def snapshot(self) -> BookSnapshotTaken:
        """Return the current book as a REST-style snapshot."""
        price = self._price
        return BookSnapshotTaken(
            stream=self.depth_stream,
            version=0,
            exchange_ts=self.time,
            receive_ts=self.time + 5_000_000,
            exchange=EXCHANGE,
            symbol=self.symbol,
            last_update_id=self.update_id - 1,
            bids=tuple((price(t), q) for t, q in sorted(self.bids.items(), reverse=True)),
            asks=tuple((price(t), q) for t, q in sorted(self.asks.items())),
        )

    def step(self, out: list[MarketEvent]) -> None:
        """Advance one step; append the diff (and maybe a trade) to ``out``."""
        rng = self.rng
        self.time += self.step_ns
        move = round(rng.gauss(0.0, self.sigma))
        bids, asks, price = self.bids, self.asks, self._price
        bid_changes: list[PriceLevel] = []
        ask_changes: list[PriceLevel] = []
        new_bid = self.bid + move
        new_ask = new_bid + 1 + (rng.random() < 0.3)
        if move > 0:
            for t in [t for t in asks if t < new_ask]:
                del asks[t]
                ask_changes.append((price(t), Decimal(0)))
        elif move < 0:
            for t in [t for t in bids if t > new_bid]:
                del bids[t]
                bid_changes.append((price(t), Decimal(0)))
        for t in [t for t in bids if t >= new_ask]:
            del bids[t]
            bid_changes.append((price(t), Decimal(0)))
        for t in [t for t in asks if t <= new_bid]:
            del asks[t]
            ask_changes.append((price(t), Decimal(0)))
        for book, changes, best, sign in (
            (bids, bid_changes, new_bid, -1),
            (asks, ask_changes, new_ask, 1),
        ):
            if best not in book:
                q = self._qty()
                book[best] = q
                changes.append((price(best), q))
            level = best + sign * rng.randrange(1, self.depth)
            q = self._qty()
            book[level] = q
            changes.append((price(level), q))
            while len(book) > self.depth:
                far = min(book) if sign < 0 else max(book)
                del book[far]
                changes.append((price(far), Decimal(0)))
        self.bid = max(bids)
        self.ask = min(asks)
        first = self.update_id
        last = first + rng.randrange(0, 4)
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
        if rng.random() < self.trade_probability:
            buyer_is_maker = rng.random() < 0.5
            t = self.bid if buyer_is_maker else self.ask
            out.append(
                TradeReceived(
                    stream=self.trade_stream,
                    version=0,
                    exchange_ts=self.time,
                    receive_ts=self.time + 5_000_000,
                    exchange=EXCHANGE,
                    symbol=self.symbol,
                    trade_id=self.trade_id,
                    price=price(t),
                    quantity=self._qty(),
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
        trade_probability: float = 0.2,
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
                trade_probability=trade_probability,
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
