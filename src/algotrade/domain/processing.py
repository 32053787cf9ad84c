"""The processor's pure core: market events in, closed bars and signals out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal

from algotrade.domain.bars import BarAggregator, BarRollup, Interval
from algotrade.domain.broker import OrderIntent
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import (
    BarClosed,
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    SignalEmitted,
    TradeReceived,
)
from algotrade.domain.strategy import Decision, Strategy
from algotrade.domain.streams import signal_stream_name
from algotrade.domain.values import derived_id, indicator_values, param_values

PriceSource = Literal["mid", "trade"]

#: How far an event's clock skew (receive less exchange time) may stray from the stream's
#: before the event is kept out of bars: a minute, far beyond network delay and jitter.
CLOCK_TOLERANCE_NS = 60 * 10**9
#: Consecutive events that agree on a new skew after which it is the stream's (a clock set
#: anew, on either side, mid-run).
CLOCK_REANCHOR = 20

_log = logging.getLogger("algotrade.processing")


def signal_stream(symbol: str, interval: str, strategy: Strategy) -> str:
    """Return the stream of one strategy's signals for one symbol and interval."""
    params = "-".join(str(v) for _, v in param_values(strategy.params))
    return signal_stream_name(symbol, interval, strategy.name, params)


def _intent_fields(intent: OrderIntent | None) -> dict[str, Any]:
    """Return a decision's order intent as the fields of its signal."""
    if intent is None:
        return {}
    sizing = intent.sizing
    return {
        "size_kind": str(sizing.kind) if sizing is not None else "",
        "size": sizing.value if sizing is not None else None,
        "limit_offset_bps": intent.limit_offset_bps,
    }


class SymbolPipeline:
    """Bars and strategy of one symbol: feed market events, get bars and signals."""

    def __init__(
        self,
        symbol: str,
        interval: Interval,
        strategy: Strategy,
        *,
        price_source: PriceSource = "mid",
    ) -> None:
        self.symbol = symbol
        self.interval = interval
        self.strategy = strategy
        self.price_source = price_source
        self.bars = BarAggregator(symbol, interval)
        self.signal_stream = signal_stream(symbol, interval.name, strategy)
        self.signal_version = 0
        self.resume_position = 0
        self.bars_last_position = 0
        self._on_top = getattr(strategy, "on_top", None)
        self._on_trade = getattr(strategy, "on_trade", None)
        self.warmed_up = 0
        """Bars of history (before any stored bar) fed to the strategy by :meth:`warm_up`."""
        self.off_clock = 0
        """Market events kept out of bars: their exchange time strays from the stream's."""
        self._skew: int | None = None
        self._new_skew: int | None = None
        self._agreeing = 0
        self.params = param_values(strategy.params)
        """The strategy's parameters as its signals carry them."""
        self._contexts = [BarRollup(symbol, Interval.parse(name))
                          for name in getattr(strategy, "intervals", ())]  # fmt: skip
        self._on_context = getattr(strategy, "on_context_bar", None)
        if self._contexts and self._on_context is None:
            raise ConfigurationError(
                "strategy", f"{strategy.name} asks for intervals but has no on_context_bar(bar)"
            )
        for context in self._contexts:
            if context.interval.nanos % interval.nanos or context.interval.nanos <= interval.nanos:
                raise ConfigurationError(
                    "intervals", f"{context.interval.name} is not a longer multiple of the "
                    f"bars' {interval.name}"
                )  # fmt: skip
        self.decide: Callable[[BarClosed], Decision | None] = (
            self._decide_with_contexts if self._contexts else strategy.on_bar
        )
        """The strategy's decision on one closed bar, its longer bars handed over first."""
        self._key = (
            strategy.name,
            ",".join(f"{k}={v}" for k, v in self.params),
            symbol,
            interval.name,
        )

    def warm_up(self, bars: Iterable[BarClosed]) -> int:
        """Feed history older than anything stored to the strategy; emit nothing.

        The decisions the history implies are dropped: they are the past, not signals to
        act upon. Return how many bars were fed.
        """
        on_bar = self.decide
        count = 0
        for bar in bars:
            on_bar(bar)
            count += 1
        self.warmed_up += count
        return count

    def restore(self, bars: Iterable[BarClosed]) -> list[SignalEmitted]:
        """Warm up from stored bars; return the signals they imply (ids as before)."""
        signals = []
        last = None
        for bar in bars:
            last = bar
            signal = self.on_bar(bar)
            if signal is not None:
                signals.append(signal)
        if last is not None:
            self.bars.resume_after(last)
            self.resume_position = self.bars_last_position = last.last_position
        return signals

    def on_event(self, event: Event, position: int) -> list[Event]:
        """Consume one stored market event at ``position``; return new bars and signals."""
        if position <= self.resume_position:
            return []
        if isinstance(event, TradeReceived):
            if self.price_source != "trade":
                if self._on_trade is not None:
                    self._on_trade(event)
                return []
            price = event.price
        elif self.price_source == "mid":
            if not isinstance(event, DepthDiffReceived | BookSnapshotTaken) or event.top is None:
                return []
            price = event.top.mid
        else:
            return []
        if not self._on_clock(event, position):
            return []
        bar = self.bars.on_price(event.exchange_ts, price, position, event.receive_ts)
        produced: list[Event] = []
        if bar is not None:  # the previous bar closes before the strategy sees the new price
            self.bars_last_position = bar.last_position
            produced.append(bar)
            signal = self.on_bar(bar)
            if signal is not None:
                produced.append(signal)
        if self._on_top is not None and not isinstance(event, TradeReceived):
            self._on_top(event.top, event.exchange_ts)
        elif self._on_trade is not None and isinstance(event, TradeReceived):
            self._on_trade(event)
        return produced

    def _on_clock(self, event: Event, position: int) -> bool:
        """Return whether ``event``'s exchange time may make bars.

        The stream's skew (receive less exchange time) follows its events. An event whose
        skew strays from it by more than :data:`CLOCK_TOLERANCE_NS` (an exchange time that
        runs backwards, or jumps ahead of the stream) is counted in :attr:`off_clock`,
        logged and kept out of bars, where it would close a bar early or freeze them; after
        :data:`CLOCK_REANCHOR` consecutive events agreeing on a new skew, that one is the
        stream's.
        """
        skew = event.receive_ts - event.exchange_ts
        known = self._skew
        if known is None or abs(skew - known) <= CLOCK_TOLERANCE_NS:
            self._skew = skew
            self._new_skew, self._agreeing = None, 0
            return True
        if self._new_skew is not None and abs(skew - self._new_skew) <= CLOCK_TOLERANCE_NS:
            self._agreeing += 1
            if self._agreeing >= CLOCK_REANCHOR:
                _log.warning("%s: the exchange's clock is now %.3f s from this machine's "
                             "(was %.3f s)", self.symbol, skew / 1e9, known / 1e9)  # fmt: skip
                self._skew, self._new_skew, self._agreeing = skew, None, 0
                return True
        else:
            self._new_skew, self._agreeing = skew, 1
        self.off_clock += 1
        if self.off_clock == 1 or self.off_clock % 1000 == 0:
            _log.warning(
                "%s: %s at position %d kept out of bars: its exchange time is %.3f s off the "
                "stream's clock (%d so far)", self.symbol, type(event).__name__, position,
                (known - skew) / 1e9, self.off_clock,
            )  # fmt: skip
        return False

    def _decide_with_contexts(self, bar: BarClosed) -> Decision | None:
        """Hand the strategy the longer bars ``bar`` closes, then ask it about ``bar``."""
        assert self._on_context is not None
        for context in self._contexts:
            for longer in context.add(bar):
                self._on_context(longer)
        return self.strategy.on_bar(bar)

    def on_bar(self, bar: BarClosed) -> SignalEmitted | None:
        """Run the strategy on one closed bar; return its signal, if any."""
        decision = self.decide(bar)
        if decision is None:
            return None
        return self.signal_for(bar, decision)

    def signal_for(self, bar: BarClosed, decision: Decision) -> SignalEmitted:
        """Return the signal of the strategy's ``decision`` on ``bar`` (the next version)."""
        self.signal_version += 1
        return SignalEmitted(
            stream=self.signal_stream,
            version=self.signal_version,
            exchange_ts=bar.exchange_ts,
            receive_ts=bar.receive_ts,
            signal_id=derived_id("signal", *self._key, bar.open_time, decision.side),
            symbol=self.symbol,
            interval=self.interval.name,
            side=decision.side,
            price=bar.close,
            short_sma=decision.short_sma,
            long_sma=decision.long_sma,
            bar_time=bar.open_time,
            strategy=self.strategy.name,
            params=self.params,
            indicators=indicator_values(getattr(decision, "indicators", None) or ()),
            **_intent_fields(getattr(decision, "intent", None)),
        )


class Processor:
    """Pipelines for every symbol seen, created on first sight by ``strategy_factory``."""

    def __init__(
        self,
        interval: Interval,
        strategy_factory: Callable[[], Strategy],
        *,
        price_source: PriceSource = "mid",
    ) -> None:
        self.interval = interval
        self.strategy_factory = strategy_factory
        self.price_source = price_source
        self.pipelines: dict[str, SymbolPipeline] = {}

    def pipeline(self, symbol: str) -> SymbolPipeline:
        """Return the symbol's pipeline, creating it (without history) if new."""
        found = self.pipelines.get(symbol)
        if found is None:
            found = SymbolPipeline(
                symbol, self.interval, self.strategy_factory(), price_source=self.price_source
            )
            self.pipelines[symbol] = found
        return found

    def on_event(self, event: Event, position: int) -> list[Event]:
        """Route one stored market event to its symbol's pipeline."""
        symbol = getattr(event, "symbol", None)
        if symbol is None:
            return []
        return self.pipeline(symbol).on_event(event, position)
