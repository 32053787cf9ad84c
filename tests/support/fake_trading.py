"""The fake Binance spot exchange's trading side: signed order endpoints and the user data
stream, on 127.0.0.1, filling orders against the market side's book.

It checks what Binance checks, as Binance documents it: the ``X-MBX-APIKEY`` header (-2015),
the HMAC-SHA256 (or Ed25519) ``signature`` over the query string (-1022), ``timestamp`` within
``recvWindow`` and at most 1 s ahead of the server (-1021), the symbol's filters (-1013),
the free balance (-2010 "Account has insufficient balance for requested action."), and a
``newClientOrderId`` already used by an open order (-2010 "Duplicate order sent."). Fills:
a market order (or a marketable limit order) walks the book's levels; a BUY pays its
commission in the base asset, a SELL in the quote asset (``fee_rate`` of each fill), as
Binance does without BNB. Each change of an order is sent as an ``executionReport`` to every
user data stream subscription of the account: on the WebSocket API (``/ws-api/v3``), after a
``userDataStream.subscribe.signature`` request checked like a signed REST request (API key,
signature over the parameters sorted by name, timestamp), wrapped as Binance wraps it
(``{"subscriptionId": N, "event": {...}}``); ``ping`` requests are answered.

Faults, as Binance produces them: ``stall_after_accept`` (the order is placed, the answer
comes after the client gave up), ``skew`` (the server clock runs ahead or behind: -1021),
``fail_next`` (429 with Retry-After, 418, 5xx), ``hold_limits`` (limit orders rest until
``fill_resting``), ``drop_user_streams`` (cut every subscribed connection),
``terminate_user_streams`` (send ``eventStreamTerminated``), ``user_streams_down`` (refuse
subscriptions with 503), and ``cancel``/``fill_resting`` change orders while nobody listens.

One Quart app (hypercorn) serves REST and the WebSocket API on one port.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio
import anyio.abc
import orjson
from anyio.streams.memory import MemoryObjectSendStream
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from quart import Quart, Response, request, websocket

from algotrade.apps.http import listen, serve_http
from tests.support.fake_binance import FakeBinance

API_KEY = "fake-api-key"
API_SECRET = "fake-api-secret"
ED25519_API_KEY = "fake-ed25519-api-key"  # signs with Ed25519 when a public key is given
SYMBOL_RULES = {  # Binance's BTCUSDT filters, abridged
    "PRICE_FILTER": {"minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
    "LOT_SIZE": {"minQty": "0.00001", "maxQty": "9000.00000000", "stepSize": "0.00001"},
    "MARKET_LOT_SIZE": {"minQty": "0.00000000", "maxQty": "100.00000000",
                        "stepSize": "0.00000000"},
    "NOTIONAL": {"minNotional": "5.00000000", "maxNotional": "9000000.00000000"},
}  # fmt: skip


@dataclass
class FakeOrder:
    """One order as the fake exchange keeps it."""

    symbol: str
    order_id: int
    client_id: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    trades: list[dict[str, Any]] = field(default_factory=list)
    locked: Decimal = Decimal(0)
    time_ms: int = 0
    update_ms: int = 0

    def json(self) -> dict[str, Any]:
        """Return the order as ``GET /api/v3/order`` answers."""
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_id, "price": str(self.price),
            "origQty": str(self.quantity), "executedQty": str(self.executed),
            "cummulativeQuoteQty": str(self.quote), "status": self.status,
            "timeInForce": "GTC", "type": self.type, "side": self.side, "time": self.time_ms,
            "updateTime": self.update_ms, "isWorking": self.status in ("NEW", "PARTIALLY_FILLED"),
            "origQuoteOrderQty": "0.00000000",
        }  # fmt: skip


class ApiError(Exception):
    """An answer with Binance's error body (and a Retry-After header when given)."""

    def __init__(
        self, status: int, code: int, msg: str, retry_after: float | str | None = None
    ) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.retry_after = status, code, msg, retry_after


class FakeTrading:
    """The trading side. ``async with FakeTrading(market) as exchange:``."""

    def __init__(
        self,
        market: FakeBinance,
        *,
        balances: dict[str, str] | None = None,
        fee_rate: Decimal = Decimal("0.001"),
        ed25519_public_key: Ed25519PublicKey | None = None,
    ) -> None:
        self.market = market
        self.ed25519_public_key = ed25519_public_key
        self.fee_rate = fee_rate
        self.free = {k: Decimal(v) for k, v in (balances or {"USDT": "100000"}).items()}
        self.locked: dict[str, Decimal] = {}
        self.orders: dict[int, FakeOrder] = {}
        self.posts: list[dict[str, str]] = []  # every POST /api/v3/order that passed auth
        self.requests: list[str] = []  # method and path of every request
        self.skew_ms = 0
        self.hold_limits = False
        self.user_streams_down = False  # subscriptions refused (503) while set
        self.stalls: list[float] = []
        self.failures: list[tuple[int, int, float | str | None]] = []
        self.garbled: dict[str, int] = {}  # path: how many of its next 200 answers to cut short
        self.subscriptions = 0  # user data stream subscriptions accepted
        self.ws_api_silent = False  # the WebSocket API answers nothing (a half-open socket)
        self._next_id = 1
        self._trade_id = 9_000_000
        self._port = 0
        self._stop = anyio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._queues: list[MemoryObjectSendStream[dict[str, Any]]] = []

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTrading:
        sock = listen("127.0.0.1", 0)
        self._port = sock.getsockname()[1]
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        await tg.start(serve_http, self._app(), sock, self._stop)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        for queue in self._queues:
            queue.close()
        await self._stack.aclose()

    @property
    def rest_url(self) -> str:
        """Return the REST base URL (``--binance-trading-url``)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def stream_url(self) -> str:
        """Return the WebSocket API URL (``--binance-user-stream-url``)."""
        return f"ws://127.0.0.1:{self._port}/ws-api/v3"

    # --- faults and changes -------------------------------------------------------------------

    def stall_after_accept(self, seconds: float, *, times: int = 1) -> None:
        """Place the next ``times`` orders, then answer only after ``seconds``."""
        self.stalls.extend([seconds] * times)

    def skew(self, ms: int) -> None:
        """Run the server clock ``ms`` milliseconds ahead (negative: behind) of real time."""
        self.skew_ms = ms

    def fail_next(
        self,
        status: int,
        *,
        code: int = -1003,
        times: int = 1,
        retry_after: float | str | None = None,
    ) -> None:
        """Answer the next ``times`` signed requests with ``status`` (and Retry-After)."""
        self.failures.extend([(status, code, retry_after)] * times)

    def garble_next(self, path: str, *, times: int = 1) -> None:
        """Cut short the body of the next ``times`` successful answers on ``path`` (after
        doing what the request asked), as a proxy or a dropped connection would."""
        self.garbled[path] = self.garbled.get(path, 0) + times

    def drop_user_streams(self) -> None:
        """Cut every connection with a user data stream subscription."""
        for queue in list(self._queues):
            queue.close()

    def terminate_user_streams(self) -> None:
        """End every subscription with ``eventStreamTerminated`` (the connections stay)."""
        self.send_event({"e": "eventStreamTerminated", "E": self._now()})

    def fill_resting(self, *, fraction: Decimal = Decimal(1)) -> int:
        """Fill ``fraction`` of what remains of every resting limit order at its price; return
        how many orders traded."""
        traded = 0
        for order in list(self.orders.values()):
            if order.type == "LIMIT" and order.status in ("NEW", "PARTIALLY_FILLED"):
                remaining = order.quantity - order.executed
                qty = (remaining * fraction).quantize(Decimal("0.00001"), rounding=ROUND_DOWN)
                if qty > 0:
                    self._trade(order, qty, order.price)
                    traded += 1
        return traded

    def cancel(self, order: FakeOrder) -> None:
        """Cancel an open order (as the user would on the website)."""
        if order.status in ("NEW", "PARTIALLY_FILLED"):
            self._unlock(order)
            order.status = "CANCELED"
            order.update_ms = self._now()
            self._report(order, "CANCELED")

    def by_client_id(self, client_id: str) -> list[FakeOrder]:
        """Return every order placed with ``client_id`` (more than one would be a duplicate)."""
        return [o for o in self.orders.values() if o.client_id == client_id]

    def balance(self, asset: str) -> Decimal:
        """Return the asset's free plus locked balance."""
        return self.free.get(asset, Decimal(0)) + self.locked.get(asset, Decimal(0))

    # --- matching -----------------------------------------------------------------------------

    def _now(self) -> int:
        return time.time_ns() // 1_000_000 + self.skew_ms

    def _assets(self, symbol: str) -> tuple[str, str]:
        return symbol[:-4], symbol[-4:]  # the fake lists USDT pairs only

    def _place(self, params: dict[str, str]) -> FakeOrder:
        symbol = params.get("symbol", "")
        if symbol not in self.market.books:
            raise ApiError(400, -1121, "Invalid symbol.")
        side, type_ = params.get("side", ""), params.get("type", "")
        if side not in ("BUY", "SELL") or type_ not in ("MARKET", "LIMIT"):
            raise ApiError(400, -1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or f"fake-{self._next_id}"
        if any(o.status in ("NEW", "PARTIALLY_FILLED") for o in self.by_client_id(client_id)):
            raise ApiError(400, -2010, "Duplicate order sent.")
        try:
            quantity = Decimal(params["quantity"])
            price = Decimal(params["price"]) if type_ == "LIMIT" else Decimal(0)
        except (KeyError, ArithmeticError):
            raise ApiError(400, -1102, "Mandatory parameter 'quantity' was not sent.") from None
        self._check_filters(symbol, type_, quantity, price)
        base, quote = self._assets(symbol)
        bids, asks = self.market.levels(symbol)
        levels = sorted(asks.items()) if side == "BUY" else sorted(bids.items(), reverse=True)
        if side == "SELL":
            need_asset, need = base, quantity
        elif type_ == "LIMIT":
            need_asset, need = quote, quantity * price
        else:  # what walking the book will cost
            need_asset, need, left = quote, Decimal(0), quantity
            for level_price, level_qty in levels:
                take = min(left, level_qty)
                need, left = need + take * level_price, left - take
        if self.free.get(need_asset, Decimal(0)) < need:
            raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
        now = self._now()
        order = FakeOrder(symbol, self._next_id, client_id, side, type_, quantity, price,
                          locked=need, time_ms=now, update_ms=now)  # fmt: skip
        self._next_id += 1
        self.orders[order.order_id] = order
        self.free[need_asset] -= need
        self.locked[need_asset] = self.locked.get(need_asset, Decimal(0)) + need
        self._report(order, "NEW")
        for level_price, level_qty in levels:
            remaining = quantity - order.executed
            if remaining <= 0:
                break
            if type_ == "LIMIT" and (
                self.hold_limits or (level_price > price if side == "BUY" else level_price < price)
            ):
                break
            self._trade(order, min(remaining, level_qty), level_price)
        if type_ == "MARKET" and order.status != "FILLED":
            self._unlock(order)
            order.status = "EXPIRED"  # not enough liquidity: the rest expires
            self._report(order, "EXPIRED")
        return order

    def _check_filters(self, symbol: str, type_: str, quantity: Decimal, price: Decimal) -> None:
        lot = SYMBOL_RULES["LOT_SIZE"]
        step, minimum = Decimal(lot["stepSize"]), Decimal(lot["minQty"])
        if quantity < minimum or quantity % step:
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        if type_ == "LIMIT" and price % Decimal(SYMBOL_RULES["PRICE_FILTER"]["tickSize"]):
            raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
        bids, asks = self.market.levels(symbol)
        mark = price if type_ == "LIMIT" else (min(asks) + max(bids)) / 2
        if quantity * mark < Decimal(SYMBOL_RULES["NOTIONAL"]["minNotional"]):
            raise ApiError(400, -1013, "Filter failure: NOTIONAL")

    def _trade(self, order: FakeOrder, qty: Decimal, price: Decimal) -> None:
        base, quote = self._assets(order.symbol)
        notional = qty * price
        self._trade_id += 1
        if order.side == "BUY":
            commission, commission_asset = qty * self.fee_rate, base
            released = qty * order.price if order.type == "LIMIT" else notional
            order.locked -= released
            self.locked[quote] -= released
            self.free[quote] += released - notional  # a limit BUY filled below its limit
            self.free[base] = self.free.get(base, Decimal(0)) + qty - commission
        else:
            commission, commission_asset = notional * self.fee_rate, quote
            order.locked -= qty
            self.locked[base] -= qty
            self.free[quote] = self.free.get(quote, Decimal(0)) + notional - commission
        order.executed += qty
        order.quote += notional
        order.status = "FILLED" if order.executed >= order.quantity else "PARTIALLY_FILLED"
        order.update_ms = self._now()
        fill = {"price": str(price), "qty": str(qty), "commission": str(commission),
                "commissionAsset": commission_asset, "tradeId": self._trade_id}  # fmt: skip
        order.trades.append({**fill, "time": order.update_ms})
        self._report(order, "TRADE", fill)

    def _unlock(self, order: FakeOrder) -> None:
        base, quote = self._assets(order.symbol)
        asset = quote if order.side == "BUY" else base
        self.locked[asset] -= order.locked
        self.free[asset] += order.locked
        order.locked = Decimal(0)

    def _report(self, order: FakeOrder, execution: str, fill: dict[str, Any] | None = None) -> None:
        now = self._now()
        event = {
            "e": "executionReport", "E": now, "s": order.symbol, "c": order.client_id,
            "S": order.side, "o": order.type, "f": "GTC", "q": str(order.quantity),
            "p": str(order.price), "x": execution, "X": order.status, "r": "NONE",
            "i": order.order_id, "l": fill["qty"] if fill else "0",
            "z": str(order.executed), "L": fill["price"] if fill else "0",
            "n": fill["commission"] if fill else "0",
            "N": fill["commissionAsset"] if fill else None,
            "T": now, "t": fill["tradeId"] if fill else -1, "w": order.status == "NEW",
            "m": False, "O": order.time_ms, "Z": str(order.quote), "C": "",
        }  # fmt: skip
        self.send_event(event)

    def send_event(self, event: dict[str, Any]) -> None:
        """Send ``event`` as it is (a malformed one too) on every user data stream."""
        for queue in list(self._queues):
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                queue.send_nowait(event)

    # --- serving --------------------------------------------------------------------------------

    def _authenticate(self, *, signed: bool) -> dict[str, str]:
        """Check the API key (and signature and timestamp); return the parameters."""
        self.requests.append(f"{request.method} {request.path}")
        key = request.headers.get("X-MBX-APIKEY")
        if key != API_KEY and (key != ED25519_API_KEY or self.ed25519_public_key is None):
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        raw = request.query_string.decode()
        params = dict(parse_qsl(raw))
        if not signed:
            return params
        if self.failures:
            status, code, retry_after = self.failures.pop(0)
            raise ApiError(status, code, f"injected {status}", retry_after)
        payload, _, signature = raw.rpartition("&signature=")
        self._check_signed(key, params, payload, unquote(signature))
        return params

    def _check_signed(
        self, key: str | None, params: dict[str, str], payload: str, signature: str
    ) -> None:
        """Check a signed request's signature over ``payload`` and its timestamp."""
        if not self._signed_by(key, payload, signature):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        try:
            timestamp = int(params["timestamp"])
            window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            raise ApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent.") from None
        if window > 60_000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        now = self._now()
        if timestamp >= now + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the "
                                       "server's time.")  # fmt: skip
        if now - timestamp > window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _signed_by(self, key: str | None, payload: str, signature: str) -> bool:
        """Check an HMAC-SHA256 (hex) or, for the Ed25519 key, an Ed25519 (base64) signature."""
        if key == ED25519_API_KEY and self.ed25519_public_key is not None:
            try:
                self.ed25519_public_key.verify(base64.b64decode(signature), payload.encode())
            except (InvalidSignature, ValueError):
                return False
            return True
        expected = hmac.new(API_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature, expected)

    def _find(self, params: dict[str, str]) -> FakeOrder:
        client_id = params.get("origClientOrderId")
        for order in self.orders.values():
            if order.symbol == params.get("symbol") and (
                order.client_id == client_id
                if client_id
                else str(order.order_id) == params.get("orderId")
            ):
                return order
        raise ApiError(400, -2013, "Order does not exist.")

    def _ws_request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Answer one WebSocket API request (``ping``, ``userDataStream.subscribe.signature``)."""
        request_id, method = message.get("id"), message.get("method")
        self.requests.append(f"WS {method}")
        try:
            if method == "ping":
                return {"id": request_id, "status": 200, "result": {}}
            if method != "userDataStream.subscribe.signature":
                raise ApiError(400, -1020, f"Unsupported method {method!r}.")
            params = {k: str(v) for k, v in message.get("params", {}).items()}
            key = params.get("apiKey")
            if key != API_KEY and (key != ED25519_API_KEY or self.ed25519_public_key is None):
                raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
            if self.user_streams_down:
                raise ApiError(503, -1001, "Internal error; unable to process your request.")
            signature = params.pop("signature", "")
            payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
            self._check_signed(key, params, payload, signature)
        except ApiError as e:
            error = {"code": e.code, "msg": e.msg}
            return {"id": request_id, "status": e.status, "error": error}
        self.subscriptions += 1
        return {"id": request_id, "status": 200, "result": {"subscriptionId": self.subscriptions}}

    async def _forward(self, subscription: int, tg: anyio.abc.TaskGroup) -> None:
        """Send the account's events to one subscription until it ends; cut the connection
        when ``drop_user_streams`` closes its queue."""
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](1000)
        self._queues.append(send)
        try:
            async with receive:
                async for event in receive:
                    await websocket.send_json({"subscriptionId": subscription, "event": event})
                    if event.get("e") == "eventStreamTerminated":
                        return
            await websocket.close(1001)
            tg.cancel_scope.cancel()
        finally:
            self._queues.remove(send)
            send.close()

    def _app(self) -> Quart:
        app = Quart("fake-binance-trading")

        @app.errorhandler(ApiError)
        async def api_error(e: ApiError) -> Response:
            response = Response(
                f'{{"code":{e.code},"msg":"{e.msg}"}}', status=e.status,
                content_type="application/json",
            )  # fmt: skip
            if e.retry_after is not None:
                response.headers["Retry-After"] = str(e.retry_after)
            return response

        @app.after_request
        async def garble(response: Response) -> Response:
            if response.status_code == 200 and self.garbled.get(request.path, 0) > 0:
                self.garbled[request.path] -= 1
                body = await response.get_data()
                response.set_data(body[: len(body) // 2])
            return response

        @app.get("/api/v3/ping")
        async def ping() -> dict[str, Any]:
            return {}

        @app.get("/api/v3/time")
        async def server_time() -> dict[str, Any]:
            return {"serverTime": self._now()}

        @app.get("/api/v3/exchangeInfo")
        async def exchange_info() -> dict[str, Any]:
            symbols = [
                {"symbol": s, "status": "TRADING", "baseAsset": self._assets(s)[0],
                 "quoteAsset": self._assets(s)[1],
                 "filters": [{"filterType": k, **v} for k, v in SYMBOL_RULES.items()]}
                for s in self.market.books
            ]  # fmt: skip
            return {"timezone": "UTC", "serverTime": self._now(), "symbols": symbols}

        @app.get("/api/v3/ticker/bookTicker")
        async def book_ticker() -> dict[str, Any]:
            symbol = request.args.get("symbol", "")
            if symbol not in self.market.books:
                raise ApiError(400, -1121, "Invalid symbol.")
            bids, asks = self.market.levels(symbol)
            best_bid, best_ask = max(bids), min(asks)
            return {"symbol": symbol, "bidPrice": str(best_bid), "bidQty": str(bids[best_bid]),
                    "askPrice": str(best_ask), "askQty": str(asks[best_ask])}  # fmt: skip

        @app.post("/api/v3/order")
        async def new_order() -> dict[str, Any]:
            params = self._authenticate(signed=True)
            self.posts.append(params)
            order = self._place(params)
            if self.stalls:
                await anyio.sleep(self.stalls.pop(0))  # placed; the client has given up
            fills = [{k: v for k, v in t.items() if k != "time"} for t in order.trades]
            return {**order.json(), "transactTime": order.time_ms, "fills": fills}

        @app.get("/api/v3/order")
        async def query_order() -> dict[str, Any]:
            return self._find(self._authenticate(signed=True)).json()

        @app.delete("/api/v3/order")
        async def cancel_order() -> dict[str, Any]:
            order = self._find(self._authenticate(signed=True))
            if order.status not in ("NEW", "PARTIALLY_FILLED"):
                raise ApiError(400, -2011, "Unknown order sent.")  # as Binance: nothing open
            self.cancel(order)
            return order.json()

        @app.get("/api/v3/openOrders")
        async def open_orders() -> list[dict[str, Any]]:
            params = self._authenticate(signed=True)
            return [
                o.json()
                for o in self.orders.values()
                if o.status in ("NEW", "PARTIALLY_FILLED")
                and o.symbol == params.get("symbol", o.symbol)
            ]

        @app.get("/api/v3/myTrades")
        async def my_trades() -> list[dict[str, Any]]:
            params = self._authenticate(signed=True)
            order = self._find(params)
            return [
                {"symbol": order.symbol, "id": t["tradeId"], "orderId": order.order_id,
                 "price": t["price"], "qty": t["qty"],
                 "quoteQty": str(Decimal(t["price"]) * Decimal(t["qty"])),
                 "commission": t["commission"], "commissionAsset": t["commissionAsset"],
                 "time": t["time"], "isBuyer": order.side == "BUY", "isMaker": False}
                for t in order.trades
            ]  # fmt: skip

        @app.get("/api/v3/account")
        async def account() -> dict[str, Any]:
            self._authenticate(signed=True)
            assets = sorted(set(self.free) | set(self.locked))
            return {
                "canTrade": True, "accountType": "SPOT",
                "balances": [{"asset": a, "free": str(self.free.get(a, Decimal(0))),
                              "locked": str(self.locked.get(a, Decimal(0)))} for a in assets],
            }  # fmt: skip

        @app.websocket("/ws-api/v3")
        async def ws_api() -> None:
            await websocket.accept()
            async with anyio.create_task_group() as tg:
                while True:
                    request_ = orjson.loads(await websocket.receive())
                    if self.ws_api_silent:
                        continue
                    answer = self._ws_request(request_)
                    if answer.get("status") == 200 and "subscriptionId" in answer["result"]:
                        tg.start_soon(self._forward, answer["result"]["subscriptionId"], tg)
                    await websocket.send_json(answer)

        return app
