"""Backtesting core: the live processor's pipeline over history, paper trading, figures.

:class:`Backtester` drives a :class:`~algotrade.domain.processing.SymbolPipeline` (the
object the live processor runs for each symbol) with closed bars or with stored market
events, and acts on each signal with the trader's own functions
(:func:`~algotrade.domain.broker.place_order`, :func:`~algotrade.domain.broker.check_order`,
:func:`~algotrade.domain.broker.paper_fill`, :func:`~algotrade.domain.broker.apply_fill`).
So a backtest's signals are the live signals, ids included, and its orders follow the
trader's rules: long only, a BUY opens a position when flat, a SELL closes it.

Fills happen at the close of the bar that produced the signal (the signal's price), with
the fee rate charged on the notional of each fill.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext
from itertools import islice
from math import fsum
from operator import attrgetter, mul
from typing import Any, Protocol

from algotrade.domain.bars import BarColumns
from algotrade.domain.broker import (
    Position,
    apply_fill,
    check_order,
    intent_of,
    limit_price,
    paper_fill,
    place_order,
)
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed, Event, OrderFilled, SignalEmitted
from algotrade.domain.processing import SymbolPipeline
from algotrade.domain.strategy import Decision
from algotrade.domain.values import Params, Side, TopOfBook, decimal_text

ZERO = Decimal(0)
QUANTITY_STEP = Decimal("0.00000001")  # Binance's smallest BTC step
YEAR_NS = 365 * 86_400 * 1_000_000_000  # crypto trades every day of the year
_CLOSE_TIME = attrgetter("close_time")


@dataclass(frozen=True, slots=True)
class Trade:
    """One filled order of a backtest.

    ``pnl`` is set on the fill that closes a position: the round trip's profit, net of
    the fees of both fills.
    """

    order_id: str
    signal_id: str
    side: Side
    time: int
    price: Decimal
    quantity: Decimal
    fee: Decimal
    pnl: Decimal | None = None


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Everything a backtest produced, and the usual figures.

    ``equity`` holds the equity at each bar's close (cash plus the open position marked at
    the close), ``times`` each bar's close time in ns: :attr:`equity_curve` pairs them.
    ``max_drawdown`` is the largest fall from a peak, as a fraction of that peak.
    ``sharpe`` is the annualised ratio of the mean to the standard deviation of the
    per-bar returns (risk-free rate 0, 365 days a year), or ``None`` when the returns do
    not vary. ``win_rate`` is the share of closed round trips with a positive ``pnl``,
    ``None`` before the first one closes.
    """

    symbol: str
    interval: str
    strategy: str
    params: Params
    bars: int
    closed_bars: Sequence[BarClosed]
    signals: tuple[SignalEmitted, ...]
    trades: tuple[Trade, ...]
    times: Sequence[int]
    equity: Sequence[float]
    initial_cash: Decimal
    final_equity: float
    total_return: float
    max_drawdown: float
    sharpe: float | None
    win_rate: float | None
    round_trips: int
    fees_paid: Decimal
    rejected_orders: int
    open_quantity: Decimal

    @property
    def equity_curve(self) -> list[tuple[int, float]]:
        """Return ``(close time in ns, equity)`` for every bar."""
        return list(zip(self.times, self.equity, strict=True))

    @property
    def number_of_trades(self) -> int:
        """Return how many orders were filled (a round trip is two)."""
        return len(self.trades)

    def metrics(self) -> dict[str, Any]:
        """Return the figures as plain JSON-able values."""
        return {
            "symbol": self.symbol,
            "interval": self.interval,
            "strategy": self.strategy,
            "params": dict(self.params),
            "bars": self.bars,
            "signals": len(self.signals),
            "trades": self.number_of_trades,
            "round_trips": self.round_trips,
            "rejected_orders": self.rejected_orders,
            "initial_cash": decimal_text(self.initial_cash),
            "final_equity": round(self.final_equity, 8),
            "total_return": round(self.total_return, 8),
            "max_drawdown": round(self.max_drawdown, 8),
            "sharpe": None if self.sharpe is None else round(self.sharpe, 6),
            "win_rate": None if self.win_rate is None else round(self.win_rate, 6),
            "fees_paid": decimal_text(self.fees_paid),
            "open_quantity": decimal_text(self.open_quantity),
        }


class CurveKernel(Protocol):
    """The equity curve and its figures computed over columns of bars (the compiled
    ``curve`` and ``curve_figures`` of ``_history.c``): the same values as
    :meth:`Backtester._curve`, :func:`max_drawdown` and :func:`sharpe_ratio`."""

    def curve(
        self,
        closes: Sequence[float],
        close_times: Sequence[int],
        changes: list[tuple[int, float, float]],
        initial: float,
        /,
    ) -> tuple[Sequence[float], Sequence[float]]:
        """Return the equity at each bar's close, and the curve with flat stretches
        shortened to one value."""
        ...

    def curve_figures(
        self, varying: Sequence[float], initial: float, /
    ) -> tuple[float, float, float, float]:
        """Return the max drawdown, the exact sums of the returns and of their squares,
        and the smallest value."""
        ...


class Backtester:
    """Runs one symbol's pipeline over history and trades its signals on paper.

    Args:
        pipeline: the symbol's pipeline, as the live processor builds it.
        fee: fee rate per fill, on the notional (0.001 is Binance's 0.1 %).
        initial_cash: quote currency at the start.
        quantity: the fixed quantity a BUY opens; ``None`` invests all the cash a BUY
            can pay for, fee included (rounded down to 1e-8).
    """

    def __init__(
        self,
        pipeline: SymbolPipeline,
        *,
        fee: Decimal = Decimal("0.001"),
        initial_cash: Decimal = Decimal(10_000),
        quantity: Decimal | None = None,
    ) -> None:
        if fee < 0 or fee >= 1:
            raise ConfigurationError("fee", f"must be a rate in [0, 1), got {fee}")
        if initial_cash <= 0:
            raise ConfigurationError("initial_cash", f"must be positive, got {initial_cash}")
        if quantity is not None and quantity <= 0:
            raise ConfigurationError("quantity", f"must be positive, got {quantity}")
        self.pipeline = pipeline
        self.fee = fee
        self.initial_cash = initial_cash
        self.quantity = quantity
        self.cash = initial_cash
        self.position = Position(pipeline.symbol)
        self.signals: list[SignalEmitted] = []
        self.trades: list[Trade] = []
        self.rejected_orders = 0
        self._bars: list[BarClosed] = []
        self._columns: BarColumns | None = None
        self._kernel: CurveKernel | None = None
        self._changes: list[tuple[int, float, float]] = []  # (bar close time, cash, quantity)
        self._entry_fee = ZERO

    def run_bars(self, bars: Iterable[BarClosed]) -> None:
        """Feed closed bars (candles, stored bars) to the strategy, in time order.

        Each bar goes through the pipeline exactly as in the live processor
        (:meth:`SymbolPipeline.on_bar` is these two steps: the strategy's ``on_bar``, then
        :meth:`SymbolPipeline.signal_for` on a decision), written out here so that a
        million bars do not pay one more call each.
        """
        decide = self.pipeline.decide
        signal_for = self.pipeline.signal_for
        if not isinstance(bars, list):
            bars = list(bars)
        self._bars.extend(bars)  # kept for the equity curve, in one C-level copy
        for bar in bars:
            decision = decide(bar)
            if decision is not None:
                self._act(signal_for(bar, decision), bar.close_time)

    def run_decided(
        self,
        bars: BarColumns,
        decisions: Iterable[tuple[int, Decision]],
        kernel: CurveKernel | None = None,
    ) -> None:
        """Trade decisions already taken over ``bars`` (``(bar index, decision)`` in bar
        order): what :meth:`run_bars` does once the strategy has decided, for a strategy
        whose decisions were computed over the whole column of closes at once (the SMA
        crossover's compiled kernel). Only the bars that decided are built; ``kernel``, if
        given, computes the equity curve and its figures over the columns. Runs once, on a
        fresh backtester."""
        if self._bars or self._columns is not None:
            raise ConfigurationError("bars", "run_decided runs once, on a fresh backtester")
        self._columns = bars
        self._kernel = kernel
        signal_for = self.pipeline.signal_for
        for index, decision in decisions:
            bar = bars[index]
            self._act(signal_for(bar, decision), bar.close_time)

    def run_events(self, events: Iterable[tuple[Event, int]]) -> None:
        """Feed stored market events ``(event, position)``: bars are built as live."""
        on_event = self.pipeline.on_event
        keep = self._bars.append
        for event, position in events:
            for produced in on_event(event, position):
                if isinstance(produced, BarClosed):
                    keep(produced)
                elif isinstance(produced, SignalEmitted):
                    self._act(produced, self._bars[-1].close_time)

    def _act(self, signal: SignalEmitted, at: int) -> None:
        """Do what the trader does with a signal, filling at the signal's price.

        ``at`` is the close time of the signal's bar: the equity changes from that bar on.
        """
        self.signals.append(signal)
        position = self.position
        price = signal.price
        intent = intent_of(signal)
        quantity = self.quantity
        if intent.sizing is not None and signal.side is Side.BUY:
            # The trader's sizing, on the cash a BUY can spend once its fee is paid.
            sized = intent.sizing.quantity(price, self.cash / (1 + self.fee))
            if not isinstance(sized, Decimal):
                self.rejected_orders += 1
                return
            quantity = sized
        elif quantity is None:
            with localcontext() as exact:
                exact.prec = 60
                affordable = self.cash / (price * (1 + self.fee))
                exact.prec = max(60, affordable.adjusted() + 12)  # whatever the compounding
                quantity = affordable.quantize(QUANTITY_STEP, ROUND_DOWN)
        limit = limit_price(price, signal.side, intent.limit_offset_bps)
        order = place_order(signal, position, quantity, limit_price=limit)
        with localcontext() as exact:
            exact.prec = max(60, self.cash.adjusted() + 12)
            unaffordable = order.quantity * price * (1 + self.fee) > self.cash
        if (signal.side is Side.BUY and unaffordable) or check_order(order, position):
            self.rejected_orders += 1
            return
        fill = paper_fill(order, TopOfBook(price, ZERO, price, ZERO), self.fee)
        if not isinstance(fill, OrderFilled):  # a limit the price does not reach, as paper
            self.rejected_orders += 1
            return
        self.position, _ = apply_fill(position, fill)
        pnl = None
        if fill.side is Side.BUY:
            self.cash -= fill.price * fill.quantity + fill.fee
            self._entry_fee = fill.fee
        else:
            self.cash += fill.price * fill.quantity - fill.fee
            gross = self.position.realised_pnl - position.realised_pnl
            pnl = gross - fill.fee - self._entry_fee
            self._entry_fee = ZERO
        self.trades.append(
            Trade(
                fill.order_id,
                fill.signal_id,
                fill.side,
                signal.exchange_ts,
                fill.price,
                fill.quantity,
                fill.fee,
                pnl,
            )
        )
        self._changes.append((at, float(self.cash), float(self.position.quantity)))

    def equity(self) -> list[float]:
        """Return the equity at each bar's close."""
        return self._curve(self._times())[0]

    def _times(self) -> list[int]:
        if self._columns is not None:
            return list(self._columns.close_times)
        return list(map(_CLOSE_TIME, self._bars))

    def _curve(self, times: list[int]) -> tuple[list[float], list[float]]:
        """Return the equity at each bar's close, and the same curve with each flat stretch
        (no position: constant equity) shortened to one value, which has the same
        drawdown and the same non-zero returns."""
        closes: Sequence[float] = (
            [float(b.close) for b in self._bars] if self._columns is None
            else self._columns.closes
        )  # fmt: skip
        out: list[float] = []
        varying: list[float] = []
        cash, quantity = float(self.initial_cash), 0.0
        start = 0
        for at, new_cash, new_quantity in self._changes:
            index = bisect_left(times, at, start)
            segment = _marked(closes[start:index], cash, quantity)
            out.extend(segment)
            varying.extend(segment if quantity else segment[:1])
            cash, quantity, start = new_cash, new_quantity, index
        segment = _marked(closes[start:], cash, quantity)
        out.extend(segment)
        varying.extend(segment if quantity else segment[:1])
        return out, varying

    def result(self) -> BacktestResult:
        """Return the signals, trades, equity curve and figures so far."""
        initial = float(self.initial_cash)
        interval = self.pipeline.interval.nanos
        kernel = self._kernel
        times: Sequence[int]
        equity: Sequence[float]
        if kernel is not None and self._columns is not None:  # the same figures, compiled
            columns = self._columns
            times = columns.close_times
            equity, varying = kernel.curve(columns.closes, times, self._changes, initial)
            drawdown, total, squares, lowest = kernel.curve_figures(varying, initial)
            count = len(equity)
            sharpe = None
            if count >= 2 and len(varying) and initial > 0 and lowest > 0:
                sharpe = _sharpe(total, squares, count, interval)
        else:
            times = self._times()
            equity, curve = self._curve(times)
            drawdown = max_drawdown(curve)
            sharpe = sharpe_ratio(curve, interval, initial, len(equity))
        final = equity[-1] if equity else initial
        closed = [t.pnl for t in self.trades if t.pnl is not None]
        strategy = self.pipeline.strategy
        return BacktestResult(
            symbol=self.pipeline.symbol,
            interval=self.pipeline.interval.name,
            strategy=strategy.name,
            params=self.pipeline.params,
            bars=len(equity),
            closed_bars=tuple(self._bars) if self._columns is None else self._columns,
            signals=tuple(self.signals),
            trades=tuple(self.trades),
            times=tuple(times) if isinstance(times, list) else times,
            equity=tuple(equity) if isinstance(equity, list) else equity,
            initial_cash=self.initial_cash,
            final_equity=final,
            total_return=final / initial - 1,
            max_drawdown=drawdown,
            sharpe=sharpe,
            win_rate=sum(1 for p in closed if p > 0) / len(closed) if closed else None,
            round_trips=len(closed),
            fees_paid=sum((t.fee for t in self.trades), ZERO),
            rejected_orders=self.rejected_orders,
            open_quantity=self.position.quantity,
        )


def _marked(closes: Sequence[float], cash: float, quantity: float) -> list[float]:
    if not quantity:
        return [cash] * len(closes)
    return [cash + quantity * close for close in closes]


def max_drawdown(equity: Iterable[float]) -> float:
    """Return the largest fall from a running peak, as a fraction of the peak."""
    peak = -math.inf
    worst = 0.0
    for value in equity:
        if value > peak:
            peak = value
        elif peak > 0:
            drop = (peak - value) / peak
            if drop > worst:
                worst = drop
    return worst


def sharpe_ratio(
    equity: list[float], interval_ns: int, initial: float, count: int | None = None
) -> float | None:
    """Return the annualised Sharpe ratio of per-bar returns (``None``: no variation).

    ``count`` is the number of bars when ``equity`` has its flat stretches shortened to
    one value each (their returns are zero: they count, and add nothing to the sums).
    """
    n = len(equity) if count is None else count
    if n < 2 or not equity or initial <= 0 or min(equity) <= 0:
        return None
    returns = [b / a - 1.0 for a, b in zip(equity, islice(equity, 1, None), strict=False)]
    returns.append(equity[0] / initial - 1.0)
    return _sharpe(fsum(returns), fsum(map(mul, returns, returns)), n, interval_ns)


def _sharpe(total: float, squares: float, n: int, interval_ns: int) -> float | None:
    """Return the annualised Sharpe ratio of ``n`` per-bar returns from their exact sum and
    sum of squares."""
    mean = total / n
    variance = (squares - n * mean * mean) / (n - 1)
    if variance <= 1e-300:
        return None
    return mean / math.sqrt(variance) * math.sqrt(YEAR_NS / interval_ns)
