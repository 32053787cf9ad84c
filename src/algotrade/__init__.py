"""algotrade: collect crypto market data, run a strategy, act on its signals, lose nothing.

The public API re-exports the pure domain; adapters and apps live in their subpackages.
"""

from algotrade.domain import (
    AlgotradeError,
    BarClosed,
    BookSynchronizer,
    ConfigurationError,
    Decision,
    Interval,
    OrderBook,
    Side,
    SignalEmitted,
    SimpleMovingAverage,
    SmaCrossover,
    Strategy,
    TopOfBook,
)

__all__ = [
    "AlgotradeError",
    "BarClosed",
    "BookSynchronizer",
    "ConfigurationError",
    "Decision",
    "Interval",
    "OrderBook",
    "Side",
    "SignalEmitted",
    "SimpleMovingAverage",
    "SmaCrossover",
    "Strategy",
    "TopOfBook",
]
__version__ = "0.1.0"
