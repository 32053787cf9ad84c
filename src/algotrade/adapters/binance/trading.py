"""Binance spot trading: an :class:`~algotrade.domain.ports.OrderGateway` over the signed
REST API.

Every order is sent with ``newClientOrderId`` equal to its order id (the signal's id), and
the gateway **looks before it places**: it first asks ``GET /api/v3/order`` for that client
id, and only when the exchange does not know it sends ``POST /api/v3/order``. So a
redelivered signal, a retry after a timeout, or a trader restarted between the exchange's
fill and the store's write finds the order the first attempt placed and never places a
second one. (Binance refuses a duplicate client id only while the first order is open; a
filled market order would not stop a second one.)

What each answer means:

==========================================  ===================================================
timeout, connection error, 5xx, not JSON   the order may or may not exist: look it up, retry
``-1021`` timestamp outside the recvWindow  re-synchronise with ``GET /api/v3/time``, retry
429 / ``-1003`` with ``Retry-After``        wait (up to ``max_wait`` seconds), retry
418 (IP banned)                             give up for now: :class:`ExchangeError`
``-2010`` "Duplicate order sent."           the order exists: look it up
``-2010``, ``-1013``, ``-11xx`` (the order)  the order is rejected, with Binance's code and text
``-2014``/``-2015``/``-1022`` (credentials)  :class:`ExchangeError`: the signal stays pending
==========================================  ===================================================

Exchange rules (tick size, lot size, notional from ``/api/v3/exchangeInfo``) are applied
before sending: an order that cannot satisfy them is rejected with the reason and no
request is sent. Commissions are counted in quote currency: a commission taken in the base
asset (a BUY without BNB) also reduces the quantity the position receives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import anyio
import httpx
import orjson

from algotrade.adapters.binance.answers import reading
from algotrade.adapters.binance.messages import parse_symbol_rules, retry_after
from algotrade.adapters.binance.signing import (
    API_KEY_HEADER,
    DEFAULT_RECV_WINDOW_MS,
    Signer,
    signed_query,
)
from algotrade.domain.broker import ExecutionReport, Position, order_update, reject
from algotrade.domain.errors import ExchangeError
from algotrade.domain.events import OrderFilled, OrderPlaced, OrderRejected, OrderUpdated
from algotrade.domain.ports import Clock
from algotrade.domain.rules import SymbolInfo, fit_limit_order, fit_market_order
from algotrade.domain.values import OrderStatus, Side

T = TypeVar("T")

#: Error codes that reject the order itself (Binance's "11xx request issues" and "NEW_ORDER_
#: REJECTED"); any other code says nothing about the order, which is then looked up again.
REJECTING = frozenset({-1013, -1100, -1101, -1102, -1104, -1106, -1111, -1112, -1115, -1116,
                       -1117, -1121, -2010})  # fmt: skip
CREDENTIALS = frozenset({-1022, -2014, -2015})
ORDER_UNKNOWN = -2013
CANCEL_REJECTED = -2011  # "Unknown order sent.": nothing open to cancel
TIMESTAMP = -1021
#: Binance's order statuses as the domain's.
ORDER_STATUS = {
    "NEW": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.NEW,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}


@dataclass
class GatewayStats:
    """What the gateway did: for logs, metrics and tests."""

    requests: int = 0
    placed: int = 0
    found: int = 0  # orders a lookup found already placed: duplicates prevented
    uncertain: int = 0  # timeouts, connection errors and 5xx
    resyncs: int = 0
    rate_limited: int = 0
    rejected_by_rules: int = 0
    rejected_by_exchange: int = 0


class _ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, retry_after: float) -> None:
        super().__init__(f"HTTP {status}, code {code}: {msg}")
        self.status, self.code, self.msg, self.retry_after = status, code, msg, retry_after


class _UncertainError(Exception):
    """The request may or may not have taken effect."""


class BinanceGateway:
    """Market and limit orders on Binance spot, exactly once per order id."""

    def __init__(
        self,
        rest_url: str,
        api_key: str,
        signer: Signer,
        *,
        clock: Clock,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        timeout: float = 10.0,
        attempts: int = 5,
        max_wait: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.clock = clock
        self.recv_window_ms = recv_window_ms
        self.attempts = attempts
        self.max_wait = max_wait
        self.stats = GatewayStats()
        self.offset_ms = 0  # server time minus local time
        self._signer = signer
        self._symbols: dict[str, SymbolInfo] = {}
        self._synced = False
        self._client = httpx.AsyncClient(
            base_url=self.rest_url,
            headers={API_KEY_HEADER: api_key},
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"BinanceGateway({self.rest_url!r}, api_key=***)"

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    # --- the port -------------------------------------------------------------------------

    async def submit(self, order: OrderPlaced) -> OrderFilled | OrderRejected | OrderUpdated:
        """Place ``order`` unless the exchange already has it; return what became of it.

        Raises:
            ExchangeError: the exchange could not be reached or would not say, after
                ``attempts`` tries; nothing is known to have been placed twice.
        """
        info = await self.symbol_info(order.symbol)
        params = await self._order_params(order, info)
        if isinstance(params, str):
            self.stats.rejected_by_rules += 1
            return reject(order, f"exchange rules: {params}")
        last: Exception | None = None
        for _ in range(self.attempts):
            try:
                found = await self._report(order)
                if found is not None:
                    self.stats.found += 1
                    return self._outcome(order, found)
                body = await self._signed("POST", "/api/v3/order", params)
                self.stats.placed += 1
                return self._outcome(order, self._parse_order(body, info, fills=True))
            except _UncertainError as e:
                last = e
                self.stats.uncertain += 1
                await anyio.sleep(0.2)
            except _ApiError as e:
                last = e
                if e.code in REJECTING and "Duplicate order" not in e.msg:
                    self.stats.rejected_by_exchange += 1
                    return reject(order, f"binance {e.code}: {e.msg}")
                await self._recover(e)
        raise ExchangeError(f"order {order.order_id}: outcome unknown after retries: {last}")

    async def free_quote(self, symbol: str, position: Position) -> Decimal | None:
        """Return the account's free balance of the symbol's quote asset."""
        info = await self.symbol_info(symbol)
        return (await self.balances()).get(info.quote, Decimal(0))

    async def dust(self, symbol: str) -> Decimal:
        """Return the quantity below which a position cannot be sold: under the market lot
        step or the minimum quantity (what a SELL rounded down to the step leaves behind)."""
        rules = (await self.symbol_info(symbol)).rules
        step = rules.market_step_size or rules.step_size
        return max(step, rules.market_min_qty, rules.min_qty)

    # --- reads ----------------------------------------------------------------------------

    async def _report(self, order: OrderPlaced) -> ExecutionReport | None:
        """Return the exchange's cumulative report of ``order`` (``None``: never placed).

        Raises:
            _UncertainError, _ApiError: as the requests do; ``submit`` handles them.
        """
        info = await self.symbol_info(order.symbol)
        try:
            body = await self._signed(
                "GET",
                "/api/v3/order",
                {"symbol": order.symbol, "origClientOrderId": order.order_id},
            )
        except _ApiError as e:
            if e.code == ORDER_UNKNOWN:
                return None
            raise
        report = self._parse_order(body, info, fills=False)
        if report.executed_quantity > 0:  # the order's answer has no commissions: its trades do
            trades = await self._signed(
                "GET",
                "/api/v3/myTrades",
                {"symbol": order.symbol, "orderId": report.exchange_order_id},
            )
            fees, base_fees = self._commissions(trades, info)
            report = dataclasses.replace(report, fees=fees, base_fees=base_fees)
        return report

    async def lookup(self, order: OrderPlaced) -> ExecutionReport | None:
        """Return :meth:`_report`, retrying through timeouts, clock skew and rate limits.

        Raises:
            ExchangeError: the exchange would not say after ``attempts`` tries.
        """
        return await self._retried(
            f"order {order.order_id}: no answer from Binance", lambda: self._report(order)
        )

    async def cancel(self, order: OrderPlaced) -> ExecutionReport | None:
        """Cancel ``order`` if it is still open on the exchange; return its report after
        (``None``: the exchange never had it). An order that filled meanwhile is not
        cancelled: its report says FILLED.

        Raises:
            ExchangeError: the exchange would not say after ``attempts`` tries.
        """
        params = {"symbol": order.symbol, "origClientOrderId": order.order_id}

        async def delete() -> None:  # after a timeout, a second DELETE says what happened
            try:
                await self._signed("DELETE", "/api/v3/order", params)
            except _ApiError as e:
                if e.code not in (CANCEL_REJECTED, ORDER_UNKNOWN):
                    raise  # else final already (filled or cancelled), or never placed

        await self._retried(f"order {order.order_id}: cancel not confirmed", delete)
        return await self.lookup(order)

    async def _retried(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        """Return ``request()``, tried again after timeouts, clock skew and rate limits.

        Raises:
            ExchangeError: ``what``, with the last error, after ``attempts`` tries.
        """
        last: Exception | None = None
        for _ in range(self.attempts):
            try:
                return await request()
            except _UncertainError as e:
                last = e
                await anyio.sleep(0.2)
            except _ApiError as e:
                last = e
                await self._recover(e)
        raise ExchangeError(f"{what}: {last}")

    async def balances(self) -> dict[str, Decimal]:
        """Return the free balance of every asset of the account.

        Raises:
            ExchangeError: the account could not be read.
        """
        try:
            body = await self._signed("GET", "/api/v3/account", {})
        except (_UncertainError, _ApiError) as e:
            raise ExchangeError(f"account balances: {e}") from None
        with reading("account balances"):
            return {b["asset"]: Decimal(b["free"]) for b in body["balances"]}

    async def symbol_info(self, symbol: str) -> SymbolInfo:
        """Return the symbol's filters and assets (fetched once).

        Raises:
            ExchangeError: ``/api/v3/exchangeInfo`` could not be read or lacks the symbol.
        """
        found = self._symbols.get(symbol)
        if found is not None:
            return found
        body = await self._public("/api/v3/exchangeInfo", {"symbol": symbol})
        with reading(f"exchangeInfo of {symbol}"):
            rules = parse_symbol_rules(symbol, body)
            entry = next(s for s in orjson.loads(body)["symbols"] if s["symbol"] == symbol)
            found = SymbolInfo(rules, str(entry["baseAsset"]), str(entry["quoteAsset"]))
        self._symbols[symbol] = found
        return found

    async def ping(self) -> None:
        """Check, once, that the REST API answers (``GET /api/v3/ping``).

        Raises:
            ExchangeError: it does not.
        """
        await self._public("/api/v3/ping", {})

    def server_time_ms(self) -> int:
        """Return the exchange's time now, in milliseconds, as last measured."""
        return self.clock.now_ns() // 1_000_000 + self.offset_ms

    async def sync_time(self) -> None:
        """Measure the offset of the exchange's clock from ours (``GET /api/v3/time``).

        Raises:
            ExchangeError: the exchange's time could not be read.
        """
        before = self.clock.now_ns() // 1_000_000
        body = await self._public("/api/v3/time", {})
        after = self.clock.now_ns() // 1_000_000
        with reading("exchange time"):
            server = int(orjson.loads(body)["serverTime"])
        self.offset_ms = server - (before + after) // 2
        self._synced = True
        self.stats.resyncs += 1

    # --- requests -------------------------------------------------------------------------

    async def _order_params(self, order: OrderPlaced, info: SymbolInfo) -> dict[str, str] | str:
        """Return the ``POST /api/v3/order`` parameters, or why the rules forbid the order."""
        params = {
            "symbol": order.symbol,
            "side": str(order.side),
            "newClientOrderId": order.order_id,
            "newOrderRespType": "FULL",
        }
        if order.limit_price is not None:
            fitted = fit_limit_order(info.rules, order.quantity, order.limit_price)
            if isinstance(fitted, str):
                return fitted
            quantity, price = fitted
            params.update(type="LIMIT", timeInForce="GTC", price=f"{price:f}")
        else:
            fitted_qty = fit_market_order(info.rules, order.quantity, await self._reference(order))
            if isinstance(fitted_qty, str):
                return fitted_qty
            quantity = fitted_qty
            params["type"] = "MARKET"
        params["quantity"] = f"{quantity.normalize():f}"
        return params

    async def _reference(self, order: OrderPlaced) -> Decimal:
        """Return the price a market order will meet (the best ask or bid), for the notional."""
        body = await self._public("/api/v3/ticker/bookTicker", {"symbol": order.symbol})
        with reading(f"book ticker of {order.symbol}"):
            ticker = orjson.loads(body)
            return Decimal(ticker["askPrice" if order.side is Side.BUY else "bidPrice"])

    async def _recover(self, error: _ApiError) -> None:
        """Act on an error that says nothing about the order, before the next attempt."""
        if error.code in CREDENTIALS:
            raise ExchangeError(f"Binance refused the credentials: {error}")
        if error.status == 418:
            raise ExchangeError(f"Binance banned this IP for now: {error}")
        if error.code == TIMESTAMP:
            await self.sync_time()
        elif error.status == 429 or error.code == -1003:
            self.stats.rate_limited += 1
            wait = error.retry_after
            if wait > self.max_wait:
                raise ExchangeError(f"rate limited for {wait:.0f}s: {error}")
            await anyio.sleep(wait)
        else:
            await anyio.sleep(0.2)

    async def _signed(self, method: str, path: str, params: Mapping[str, str | int]) -> Any:
        if not self._synced:
            await self.sync_time()
        query = signed_query(
            params,
            self._signer,
            timestamp_ms=self.server_time_ms(),
            recv_window_ms=self.recv_window_ms,
        )
        body = await self._request(method, f"{path}?{query}")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            # Cut short on the way (a proxy, a dropped connection): it may have taken effect.
            raise _UncertainError(f"{method} {path}: the answer is not JSON ({e})") from None

    async def _public(self, path: str, params: Mapping[str, str]) -> bytes:
        try:
            return await self._request("GET", path, params)
        except (_UncertainError, _ApiError) as e:
            raise ExchangeError(f"GET {path}: {e}") from None

    async def _request(
        self, method: str, url: str, params: Mapping[str, str] | None = None
    ) -> bytes:
        self.stats.requests += 1
        try:
            response = await self._client.request(method, url, params=params)
        except httpx.HTTPError as e:
            raise _UncertainError(f"{method} {url.partition('?')[0]}: {e!r}") from None
        if response.status_code >= 500:
            raise _UncertainError(f"{method} {url.partition('?')[0]}: HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                body = orjson.loads(response.content)
                code, msg = int(body["code"]), str(body["msg"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                code, msg = 0, response.text[:200]
            raise _ApiError(response.status_code, code, msg, retry_after(response.headers, 1.0))
        return response.content

    # --- wire -----------------------------------------------------------------------------

    def _parse_order(self, body: Any, info: SymbolInfo, *, fills: bool) -> ExecutionReport:
        """Return the report of an order answer (``POST`` FULL with fills, or ``GET``)."""
        with reading("order answer"):
            fees, base_fees = self._commissions(body.get("fills", []) if fills else [], info)
            return ExecutionReport(
                client_order_id=str(body["clientOrderId"]),
                exchange_order_id=int(body["orderId"]),
                symbol=str(body["symbol"]),
                status=ORDER_STATUS[body["status"]],
                executed_quantity=Decimal(body["executedQty"]),
                executed_quote=Decimal(body["cummulativeQuoteQty"]),
                fees=fees,
                base_fees=base_fees,
                exchange_ts=int(body.get("transactTime") or body.get("updateTime") or 0)
                * 1_000_000,
            )

    @staticmethod
    def _commissions(trades: Any, info: SymbolInfo) -> tuple[Decimal, Decimal]:
        """Return the commissions paid in the quote asset and in the base asset.

        Raises:
            ExchangeError: the trades are malformed.
        """
        fees = base_fees = Decimal(0)
        with reading("order trades"):
            for trade in trades:
                amount = Decimal(trade["commission"])
                quote, base = info.commission(amount, trade["commissionAsset"])
                fees, base_fees = fees + quote, base_fees + base
        return fees, base_fees

    def _outcome(self, order: OrderPlaced, report: ExecutionReport) -> OrderRejected | OrderUpdated:
        update = order_update(order, order, report, self.clock.now_ns())
        if update is None:  # cannot happen for a fresh order; keep the port's promise
            return reject(order, f"Binance reported nothing new: {report.status}")
        return update
