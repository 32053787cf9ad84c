"""Warm-up history from Binance: closed klines (``GET /api/v3/klines``) as bars.

A daily 50/200 crossover needs 200 daily bars before its first meaningful signal; the
processor asks this adapter for them at start-up, through the configured REST base URL.
Klines are history and never change, so a restarted processor gets the same warm-up.
"""

from __future__ import annotations

import anyio
import httpx
import orjson

from algotrade.adapters.binance.messages import retry_after
from algotrade.adapters.candles import binance_interval, candle_bar
from algotrade.adapters.notices import describe
from algotrade.domain.bars import Interval
from algotrade.domain.errors import ExchangeError, InvalidInputError
from algotrade.domain.events import BarClosed

MAX_LIMIT = 1000  # Binance's largest page of klines


class BinanceKlines:
    """A :class:`~algotrade.domain.ports.BarHistory` over Binance's public REST API."""

    def __init__(self, rest_url: str, *, timeout: float = 10.0, attempts: int = 3) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.requests = 0

    async def bars_before(
        self, symbol: str, interval: Interval, before_ns: int, count: int
    ) -> list[BarClosed]:
        """Return up to ``count`` klines closed by ``before_ns``, oldest first."""
        name = binance_interval(interval)
        if name is None or count <= 0:
            return []
        bars: list[BarClosed] = []
        end_ms = before_ns // 1_000_000 - 1  # a kline's close time is open + interval - 1 ms
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while len(bars) < count:
                limit = min(MAX_LIMIT, count - len(bars))
                rows = await self._get(client, symbol, name, end_ms, limit)
                try:
                    page = [candle_bar(row, symbol, interval, 0)[0] for row in rows]
                except InvalidInputError as e:
                    raise ExchangeError(f"klines for {symbol} {name}: malformed row: {e}") from None
                page = [b for b in page if b.close_time <= before_ns]
                if not page:
                    break
                bars[:0] = page
                end_ms = page[0].open_time // 1_000_000 - 1
                if len(rows) < limit:
                    break
        return bars[-count:]

    async def _get(
        self, client: httpx.AsyncClient, symbol: str, interval: str, end_ms: int, limit: int
    ) -> list[list[object]]:
        params: dict[str, str | int] = {
            "symbol": symbol,
            "interval": interval,
            "endTime": end_ms,
            "limit": limit,
        }
        for attempt in range(self.attempts):
            self.requests += 1
            try:
                response = await client.get(f"{self.rest_url}/api/v3/klines", params=params)
            except httpx.HTTPError as e:
                error = describe(e)
            else:
                if response.status_code == 200:
                    try:
                        rows = orjson.loads(response.content)
                    except orjson.JSONDecodeError:
                        raise ExchangeError("klines: the answer is not JSON") from None
                    if not isinstance(rows, list):
                        raise ExchangeError(f"klines: expected a list, got {rows!r:.100}")
                    return rows
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code in (429, 418):
                    await anyio.sleep(min(retry_after(response.headers, 1.0), 60.0))
                    continue
                if response.status_code < 500:
                    raise ExchangeError(f"klines for {symbol} {interval}: {error}")
            if attempt + 1 < self.attempts:
                await anyio.sleep(0.5 * 2**attempt)
        raise ExchangeError(f"klines for {symbol} {interval}: {error}")
