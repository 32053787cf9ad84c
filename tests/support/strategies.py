"""A strategy outside the package, as a user writes one: every parameter type the command
line converts, and indicator values of its own."""

from __future__ import annotations

from decimal import Decimal

from strategies.breakout import Breakout as ExampleBreakout

from algotrade.domain.events import BarClosed
from algotrade.domain.strategy import Decision
from algotrade.domain.values import Side


class Breakout(ExampleBreakout):
    """The repository's example breakout, with a parameter of every type the command line
    converts (the extra ones change nothing but the signal ids)."""

    def __init__(
        self,
        window: int = 20,
        margin: Decimal = Decimal("0"),
        ratio: float = 1.0,
        mode: str = "close",
        long_only: bool = True,
    ) -> None:
        super().__init__(window, margin)
        self.ratio = ratio
        self.mode = mode
        self.long_only = long_only

    @property
    def params(self) -> tuple[tuple[str, object], ...]:
        """Return every parameter (they all take part in the signal ids)."""
        return (*super().params, ("ratio", self.ratio), ("mode", self.mode),
                ("long_only", self.long_only))  # fmt: skip


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
