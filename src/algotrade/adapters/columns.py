"""Kline history as columns: what the compiled reader (``scan_klines`` in ``_history.c``)
makes of a kline CSV file, each bar built only when asked for.

Prices are kept exact, as a coefficient and a number of decimals per value: the bar built
at ``columns[i]`` is the one :func:`algotrade.adapters.candles.candle_bar` makes of the same
row, ``Decimal`` digits and exponent included. The closes are also kept as doubles (what
the strategies compute with), as ``float(Decimal(text))`` gives them.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, overload

from algotrade.domain.bars import BarColumns, Interval
from algotrade.domain.events import BarClosed
from algotrade.domain.streams import bar_stream


class KlineColumns(BarColumns):
    """Bars of one symbol and interval as columns (see the module's text).

    Built from ``scan_klines``'s answers, one per file, in time order (:meth:`joined`).
    """

    def __init__(self, symbol: str, interval: Interval, parts: Sequence[tuple[bytes, ...]]) -> None:
        self.symbol = symbol
        self.interval = interval
        self.stream = bar_stream(symbol, interval.name)
        # open, end, trades, 4 coefficients, 4 scales, close: each part's bytes joined (no
        # copy for one part), then seen as machine values without another copy
        joined = [column[0] if len(column) == 1 else b"".join(column)
                  for column in zip(*parts, strict=True)]  # fmt: skip
        ints: list[memoryview] = [memoryview(joined[k]).cast("q") for k in range(7)]
        ints += [memoryview(joined[k]).cast("b") for k in range(7, 11)]
        self.open_times: Sequence[int] = ints[0]
        self.close_times: Sequence[int] = ints[1]
        self.trades: Sequence[int] = ints[2]
        self._coefficients = ints[3:7]
        self._scales = ints[7:11]
        self.closes: Sequence[float] = memoryview(joined[11]).cast("d")

    @classmethod
    def joined(
        cls, symbol: str, interval: Interval, scans: Sequence[tuple[Any, ...]]
    ) -> KlineColumns | None:
        """Return the columns of several files' scans, or ``None`` when they are not of
        ``interval``, or a file does not start after the one before it ends."""
        last = -1
        for span, opens, *_ in scans:
            if span != interval.nanos:
                return None
            first = memoryview(opens[:8]).cast("q")[0]
            if first <= last:
                return None
            last = memoryview(opens[-8:]).cast("q")[0]
        return cls(symbol, interval, [scan[1:] for scan in scans])

    def __len__(self) -> int:
        return len(self.open_times)

    @overload
    def __getitem__(self, index: int) -> BarClosed: ...

    @overload
    def __getitem__(self, index: slice) -> list[BarClosed]: ...

    def __getitem__(self, index: int | slice) -> BarClosed | list[BarClosed]:
        if isinstance(index, slice):
            return [self._bar(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("bar index out of range")
        return self._bar(index)

    def _price(self, column: int, index: int) -> Decimal:
        return Decimal(self._coefficients[column][index]).scaleb(-self._scales[column][index])

    def _bar(self, i: int) -> BarClosed:
        end = self.close_times[i]
        return BarClosed(
            stream=self.stream,
            version=i + 1,
            exchange_ts=end,
            receive_ts=end,
            symbol=self.symbol,
            interval=self.interval.name,
            open_time=self.open_times[i],
            close_time=end,
            open=self._price(0, i),
            high=self._price(1, i),
            low=self._price(2, i),
            close=self._price(3, i),
            updates=self.trades[i],
            last_position=0,
        )


class CompiledCurve:
    """The equity curve and its figures by ``_history.c`` (a
    :class:`~algotrade.domain.backtest.CurveKernel`), as arrays of doubles."""

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled

    def curve(
        self,
        closes: Sequence[float],
        close_times: Sequence[int],
        changes: list[tuple[int, float, float]],
        initial: float,
        /,
    ) -> tuple[array[float], array[float]]:
        """Return the equity at each bar's close, and the curve with flat stretches
        shortened to one value."""
        equity, varying = self._compiled.curve(closes, close_times, changes, initial)
        return array("d", equity), array("d", varying)

    def curve_figures(
        self, varying: Sequence[float], initial: float, /
    ) -> tuple[float, float, float, float]:
        """Return the max drawdown, the exact sums of the returns and of their squares,
        and the smallest value."""
        found: tuple[float, float, float, float] = self._compiled.curve_figures(varying, initial)
        return found
