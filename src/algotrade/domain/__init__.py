"""The pure core of algotrade: events, order book, bars, indicators, strategies, trading.

Nothing here does I/O or imports anything outside the standard library (an
import-linter contract checks it).
"""

from algotrade.domain.bars import BarAggregator, Interval
from algotrade.domain.book import BookSynchronizer, OrderBook
from algotrade.domain.broker import Position, apply_fill, check_order, paper_fill, place_order
from algotrade.domain.errors import (
    AlgotradeError,
    ConcurrencyError,
    ConfigurationError,
    ExchangeError,
    InvalidInputError,
    MessagingError,
    RecorderError,
    StoreError,
)
from algotrade.domain.events import (
    BarClosed,
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    MarketEvent,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    OrderUpdated,
    PositionChanged,
    SequenceGapDetected,
    SignalEmitted,
    TradeReceived,
)
from algotrade.domain.indicators import SimpleMovingAverage, sma_series
from algotrade.domain.processing import Processor, SymbolPipeline
from algotrade.domain.strategy import Decision, SmaCrossover, Strategy
from algotrade.domain.values import GapReason, OrderStatus, Side, TopOfBook

__all__ = [
    "AlgotradeError",
    "BarAggregator",
    "BarClosed",
    "BookSnapshotTaken",
    "BookSynchronizer",
    "ConcurrencyError",
    "ConfigurationError",
    "Decision",
    "DepthDiffReceived",
    "Event",
    "ExchangeError",
    "GapReason",
    "Interval",
    "InvalidInputError",
    "MarketEvent",
    "MessagingError",
    "OrderBook",
    "OrderFilled",
    "OrderPlaced",
    "OrderRejected",
    "OrderStatus",
    "OrderUpdated",
    "Position",
    "PositionChanged",
    "Processor",
    "RecorderError",
    "SequenceGapDetected",
    "Side",
    "SignalEmitted",
    "SimpleMovingAverage",
    "SmaCrossover",
    "StoreError",
    "Strategy",
    "SymbolPipeline",
    "TopOfBook",
    "TradeReceived",
    "apply_fill",
    "check_order",
    "paper_fill",
    "place_order",
    "sma_series",
]
