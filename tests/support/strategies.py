"""A strategy outside the package, as a user writes one: every parameter type the command
line converts, and indicator values of its own."""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from algotrade.domain.events import BarClosed
from algotrade.domain.strategy import Decision
from algotrade.domain.values import Side


class Breakout:
    """BUY on a close above the highest of the last ``window`` closes, SELL below the lowest."""

    name = "breakout"

    def __init__(
        self,
        window: int = 20,
        margin: Decimal = Decimal("0"),
        ratio: float = 1.0,
        mode: str = "close",
        long_only: bool = True,
    ) -> None:
        if window < 2:
            raise ValueError(f"window must be at least 2, got {window}")
        self.window = window
        self.margin = margin
        self.ratio = ratio
        self.mode = mode
        self.long_only = long_only
        self._closes: deque[float] = deque(maxlen=window)
        self._long = False

    @property
    def params(self) -> tuple[tuple[str, object], ...]:
        """Return every parameter (they all take part in the signal ids)."""
        return (("window", self.window), ("margin", self.margin), ("ratio", self.ratio),
                ("mode", self.mode), ("long_only", self.long_only))  # fmt: skip

    @property
    def warmup(self) -> int:
        """Return the bars the channel needs."""
        return self.window

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """Compare the close with the channel of the previous closes."""
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


class NeedsWindow(Breakout):
    """A strategy with a required parameter."""

    def __init__(self, window: int) -> None:
        super().__init__(window)


class NotAStrategy:
    """Has no on_bar."""

    name = "nothing"
    params = ()


class TrendFilter:
    """Decides on its bars, filtered by the trend of a longer interval: BUY when a bar
    closes above the last closed longer bar's close (an up-trend), SELL when below.

    It records what it saw, so that a test can check it never saw a longer bar before
    that bar closed."""

    name = "trend_filter"

    def __init__(self, longer: str = "1m") -> None:
        self.longer = longer
        self.intervals = (longer,)
        self.context: list[BarClosed] = []
        self.seen: list[tuple[int, int]] = []  # (bar close, latest longer bar close)
        self._long = False

    @property
    def params(self) -> tuple[tuple[str, object], ...]:
        """Return the longer interval."""
        return (("longer", self.longer),)

    def on_context_bar(self, bar: BarClosed) -> None:
        """Keep each closed longer bar."""
        self.context.append(bar)

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """BUY above the trend, SELL below it, once there is a trend."""
        if not self.context:
            return None
        trend = self.context[-1]
        self.seen.append((bar.close_time, trend.close_time))
        close = float(bar.close)
        if not self._long and close > float(trend.close):
            self._long = True
            return Decision(Side.BUY, close, float(trend.close), {"trend": float(trend.close)})
        if self._long and close < float(trend.close):
            self._long = False
            return Decision(Side.SELL, close, float(trend.close), {"trend": float(trend.close)})
        return None
