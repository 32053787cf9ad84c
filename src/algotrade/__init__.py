"""algotrade: collect crypto market data, run a strategy, act on its signals, lose nothing.

The public API: the pure domain (events, order book, bars, indicators, strategies,
backtesting core), plus :func:`backtest`, :func:`parity` and :func:`read_candles`, which
read files and stores and are imported on first use (``import algotrade`` stays light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    TradeReceived,
)
from algotrade.domain.backtest import Backtester, BacktestResult, Trade
from algotrade.domain.broker import OrderIntent, Sizing, SizingKind
from algotrade.domain.indicators import (
    BollingerBands,
    ExponentialMovingAverage,
    Indicator,
    RelativeStrengthIndex,
)
from algotrade.domain.strategy import BollingerBreakout, EmaCrossover, RsiReversion

if TYPE_CHECKING:
    from algotrade.adapters.candles import Candles, read_candles
    from algotrade.apps.backtesting import MarketEvents, backtest, parity
    from algotrade.services.backtesting import History, ParityResult

_LAZY = {
    "backtest": "algotrade.apps.backtesting",
    "parity": "algotrade.apps.backtesting",
    "History": "algotrade.services.backtesting",
    "MarketEvents": "algotrade.apps.backtesting",
    "ParityResult": "algotrade.services.backtesting",
    "read_candles": "algotrade.adapters.candles",
    "Candles": "algotrade.adapters.candles",
}

__all__ = [
    "AlgotradeError",
    "BacktestResult",
    "Backtester",
    "BarClosed",
    "BollingerBands",
    "BollingerBreakout",
    "BookSynchronizer",
    "Candles",
    "ConfigurationError",
    "Decision",
    "EmaCrossover",
    "ExponentialMovingAverage",
    "History",
    "Indicator",
    "Interval",
    "MarketEvents",
    "OrderBook",
    "OrderIntent",
    "ParityResult",
    "RelativeStrengthIndex",
    "RsiReversion",
    "Side",
    "SignalEmitted",
    "SimpleMovingAverage",
    "Sizing",
    "SizingKind",
    "SmaCrossover",
    "Strategy",
    "TopOfBook",
    "Trade",
    "TradeReceived",
    "backtest",
    "parity",
    "read_candles",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import the file- and store-reading helpers on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'algotrade' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
