"""An example strategy outside the package: a channel breakout.

BUY when a bar closes above the highest close of the last ``window`` bars (by ``margin``),
SELL when one closes below their lowest. Run it with any command::

    algotrade backtest --synthetic --strategy strategies/breakout.py:Breakout --param window=30
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from algotrade.domain.events import BarClosed
from algotrade.domain.strategy import Decision
from algotrade.domain.values import Side


class Breakout:
    """BUY above the highest close of the last ``window`` bars, SELL below their lowest."""

    name = "breakout"

    def __init__(self, window: int = 20, margin: Decimal = Decimal("0")) -> None:
        if window < 2:
            raise ValueError(f"window must be at least 2, got {window}")
        self.window = window
        self.margin = margin
        self._closes: deque[float] = deque(maxlen=window)
        self._long = False

    @property
    def params(self) -> tuple[tuple[str, object], ...]:
        """Return the parameters: they take part in every signal's id."""
        return (("window", self.window), ("margin", self.margin))

    @property
    def warmup(self) -> int:
        """Return how many closed bars the channel needs."""
        return self.window

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """Compare the close with the channel of the previous ``window`` closes."""
        close = float(bar.close)
        decision = None
        if len(self._closes) == self.window:
            high, low = max(self._closes), min(self._closes)
            edge = float(self.margin)
            if not self._long and close > high * (1 + edge):
                self._long, decision = True, Decision(Side.BUY, close, high, {"high": high})
            elif self._long and close < low * (1 - edge):
                self._long, decision = False, Decision(Side.SELL, close, low, {"low": low})
        self._closes.append(close)
        return decision
