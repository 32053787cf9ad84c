"""Strategies turn closed bars into decisions; :class:`SmaCrossover` is the default one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from algotrade.domain.broker import OrderIntent
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed
from algotrade.domain.indicators import (
    BollingerBands,
    ExponentialMovingAverage,
    RelativeStrengthIndex,
    SimpleMovingAverage,
)
from algotrade.domain.values import Side

#: Relative difference under which two averages count as equal (see :class:`SmaCrossover`).
EQUAL_WITHIN = 1e-12


@dataclass(frozen=True, slots=True)
class Decision:
    """A strategy's wish to buy or sell, with the indicator values that led to it.

    ``short_sma`` and ``long_sma`` are stored with the signal in the seed's layout
    (MongoDB ``trade_signals``, the Redis stream): a strategy that compares other values
    (two EMAs, a price and a band) puts them there; one that compares nothing leaves them
    at 0.0. ``indicators`` are all the values it wants kept, by name (``{"rsi": 27.4}``),
    stored with the signal too and shown by ``algotrade signals``.
    """

    side: Side
    short_sma: float = 0.0
    long_sma: float = 0.0
    indicators: Mapping[str, float] = field(default_factory=dict)
    intent: OrderIntent | None = None
    """How the order is sized and placed (see :class:`~algotrade.domain.broker.OrderIntent`);
    ``None``: the trader's settings, and all the cash at market in a backtest."""


class Strategy(Protocol):
    """Anything that reads closed bars one by one and sometimes decides to trade.

    The live processor, ``algotrade run``, :func:`algotrade.backtest` and ``algotrade
    parity`` all drive a strategy through the same
    :class:`~algotrade.domain.processing.SymbolPipeline`, so a strategy gives the same
    signals, with the same ids, everywhere. Decisions are taken on closed bars only: a
    signal's id derives from the strategy's name and parameters, the symbol, the interval,
    the bar and the side.

    Optional members, used when present:

    * ``warmup: int``: how many closed bars the strategy needs before it can decide; the
      processor fetches that much history (``/api/v3/klines``) before its first bar.
    * ``on_top(top: TopOfBook, exchange_ts: int) -> None``: every top of book the bars
      are built from (depth data only), in order, before the bar it belongs to closes.
    * ``on_trade(trade: TradeReceived) -> None``: every trade of the symbol, in order.
    * ``intervals: tuple[str, ...]`` with ``on_context_bar(bar: BarClosed) -> None``: longer
      intervals of the symbol (multiples of the strategy's own, ``("1d",)`` on 1h bars)
      whose closed bars it receives, each before the bar of its own that ends it, and never
      before it closed (no lookahead).

    A strategy object holds the state of one symbol: give each symbol its own instance
    (``Processor`` takes a factory).
    """

    @property
    def name(self) -> str:
        """Return a short stable name, part of every signal id."""
        ...

    @property
    def params(self) -> tuple[tuple[str, object], ...]:
        """Return the parameters, part of every signal id (ints, floats, strings,
        booleans and ``Decimal`` values: see :func:`~algotrade.domain.values.param_values`)."""
        ...

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """Consume one closed bar; return a decision or ``None``."""
        ...


class SmaCrossover:
    """BUY when the short SMA crosses above the long SMA, SELL when it crosses below.

    Evaluated on each closed bar once both averages are defined. A crossover is a change of
    the sign of ``short - long`` against the last non-zero sign. Equal averages neither
    trigger nor reset that sign, and the first sign after warm-up only sets it (the
    semantics of backtrader's ``CrossOver``). So sides always alternate and no signal
    repeats.

    Averages closer than :data:`EQUAL_WITHIN` of the long one count as equal: the last
    bits of two floating-point running sums are noise, never a crossover (over a flat
    stretch of prices both averages are the price, whatever their rounding).
    """

    name = "sma_crossover"

    def __init__(self, short: int = 50, long: int = 200) -> None:
        if short < 1:
            raise ConfigurationError("short", f"must be a positive period, got {short}")
        if long < 1:
            raise ConfigurationError("long", f"must be a positive period, got {long}")
        if short >= long:
            raise ConfigurationError("short", f"must be less than long ({short} >= {long})")
        self.short = SimpleMovingAverage(short)
        self.long = SimpleMovingAverage(long)
        self._sign = 0

    @property
    def params(self) -> tuple[tuple[str, int], ...]:
        """Return ``(("short", n), ("long", m))``."""
        return (("short", self.short.period), ("long", self.long.period))

    @property
    def warmup(self) -> int:
        """Return how many bars define both averages (the long period)."""
        return self.long.period

    @property
    def fresh(self) -> bool:
        """Return whether no bar was fed yet: a kernel that runs this strategy's arithmetic
        over a whole column of closes (``sma_crossover`` in ``_history.c``) may then decide
        in its place."""
        return self.short.seen == 0 and self.long.seen == 0 and self._sign == 0

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """Update both SMAs with the bar's close; return a decision on a crossover."""
        close = float(bar.close)  # update() and compare() written out: the backtest hot path
        short = self.short.update(close)
        long = self.long.update(close)
        if long is None or short is None:
            return None
        margin = long * EQUAL_WITHIN
        if short > long + margin:
            if self._sign > 0:
                return None
            previous, self._sign = self._sign, 1
            return None if previous == 0 else Decision(Side.BUY, short, long)
        if short < long - margin:
            if self._sign < 0:
                return None
            previous, self._sign = self._sign, -1
            return None if previous == 0 else Decision(Side.SELL, short, long)
        return None

    def update(self, close: float) -> Decision | None:
        """Update both SMAs with one closing price; return a decision on a crossover."""
        short = self.short.update(close)
        long = self.long.update(close)
        if short is None or long is None:
            return None
        return self.compare(short, long)

    def compare(self, short: float, long: float) -> Decision | None:
        """Feed one pair of defined averages through the crossover state."""
        margin = abs(long) * EQUAL_WITHIN
        if short > long + margin:
            sign = 1
        elif short < long - margin:
            sign = -1
        else:
            return None
        previous, self._sign = self._sign, sign
        if previous == 0 or previous == sign:
            return None
        return Decision(Side.BUY if sign > 0 else Side.SELL, short, long)


class EmaCrossover:
    """BUY when the fast EMA crosses above the slow EMA, SELL when it crosses below.

    The crossover rule of :class:`SmaCrossover` (a change of the sign of ``fast - slow``
    against the last non-zero sign; equal averages neither trigger nor reset it; the first
    sign after warm-up only sets it) on exponential averages, each seeded with the simple
    average of its first ``period`` closes. The signal's two values are the EMAs.
    """

    name = "ema_crossover"

    def __init__(self, fast: int = 12, slow: int = 26) -> None:
        if fast < 1:
            raise ConfigurationError("fast", f"must be a positive period, got {fast}")
        if slow <= fast:
            raise ConfigurationError("fast", f"must be less than slow ({fast} >= {slow})")
        self.fast = ExponentialMovingAverage(fast)
        self.slow = ExponentialMovingAverage(slow)
        self._sign = 0

    @property
    def params(self) -> tuple[tuple[str, int], ...]:
        """Return ``(("fast", n), ("slow", m))``."""
        return (("fast", self.fast.period), ("slow", self.slow.period))

    @property
    def warmup(self) -> int:
        """Return how many bars seed both averages (the slow period)."""
        return self.slow.period

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """Update both EMAs with the bar's close; return a decision on a crossover."""
        close = float(bar.close)
        fast, slow = self.fast.update(close), self.slow.update(close)
        if fast is None or slow is None:
            return None
        margin = abs(slow) * EQUAL_WITHIN
        sign = 1 if fast > slow + margin else -1 if fast < slow - margin else 0
        if sign == 0 or sign == self._sign:
            return None
        previous, self._sign = self._sign, sign
        if previous == 0:
            return None
        return Decision(Side.BUY if sign > 0 else Side.SELL, fast, slow,
                        {"fast_ema": fast, "slow_ema": slow})  # fmt: skip


class RsiReversion:
    """Mean reversion on Wilder's RSI: BUY when it falls below ``oversold``, SELL when it
    rises above ``overbought``; long only, so the sides alternate.

    The signal's two values are the RSI and the threshold it crossed.
    """

    name = "rsi_reversion"

    def __init__(self, period: int = 14, oversold: float = 30.0, overbought: float = 70.0) -> None:
        if not 0 < oversold < overbought < 100:
            raise ConfigurationError(
                "oversold", f"need 0 < oversold < overbought < 100, got {oversold}, {overbought}"
            )
        self.rsi = RelativeStrengthIndex(period)
        self.oversold = oversold
        self.overbought = overbought
        self._long = False

    @property
    def params(self) -> tuple[tuple[str, object], ...]:
        """Return the period and both thresholds."""
        return (("period", self.rsi.period), ("oversold", self.oversold),
                ("overbought", self.overbought))  # fmt: skip

    @property
    def warmup(self) -> int:
        """Return how many bars define the RSI (one more than the period: it reads changes)."""
        return self.rsi.period + 1

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """Update the RSI with the bar's close; BUY when oversold, SELL when overbought."""
        rsi = self.rsi.update(float(bar.close))
        if rsi is None:
            return None
        if not self._long and rsi < self.oversold:
            self._long = True
            return Decision(Side.BUY, rsi, self.oversold, {"rsi": rsi})
        if self._long and rsi > self.overbought:
            self._long = False
            return Decision(Side.SELL, rsi, self.overbought, {"rsi": rsi})
        return None


class BollingerBreakout:
    """BUY when a bar closes above the upper Bollinger band, SELL when one closes back below
    the middle band (the ``period``-bar mean); long only, so the sides alternate.

    The bands are ``width`` population standard deviations from the mean of the last
    ``period`` closes, the bar's own close included. The signal's two values are the close
    and the band it crossed.
    """

    name = "bollinger_breakout"

    def __init__(self, period: int = 20, width: float = 2.0) -> None:
        self.bands = BollingerBands(period, width)
        self._long = False

    @property
    def params(self) -> tuple[tuple[str, object], ...]:
        """Return the period and the width."""
        return (("period", self.bands.period), ("width", self.bands.width))

    @property
    def warmup(self) -> int:
        """Return how many bars define the bands (the period)."""
        return self.bands.period

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """Update the bands with the bar's close; BUY above the upper, SELL below the middle."""
        close = float(bar.close)
        bands = self.bands.update(close)
        if bands is None:
            return None
        lower, middle, upper = bands
        values = {"lower": lower, "middle": middle, "upper": upper}
        if not self._long and close > upper:
            self._long = True
            return Decision(Side.BUY, close, upper, values)
        if self._long and close < middle:
            self._long = False
            return Decision(Side.SELL, close, middle, values)
        return None
