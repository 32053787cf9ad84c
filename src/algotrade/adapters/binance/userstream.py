"""Binance's user data stream: the account's ``executionReport`` events, reconnecting for ever.

A listen key comes from ``POST /api/v3/userDataStream`` (API key header, no signature) and
is kept alive with ``PUT`` every 30 minutes; the events arrive on ``<stream>/ws/<listenKey>``
(httpx-ws). After every (re)connection the ``connected`` callback runs *after* the socket is
open, so the caller can reconcile its open orders over REST knowing that any later change
arrives on the socket: nothing falls between the two. A ``listenKeyExpired`` event, a close,
a network error or silence longer than ``watchdog`` reconnects with a fresh key (backoff
with jitter). A frame that cannot be understood is counted, set aside and skipped. Each
connection opened, lost or failed and each frame set aside is told to ``notify`` (a
:class:`~algotrade.adapters.notices.Notice`, which the service logs).

(Binance also offers the user data stream through its WebSocket API,
``userDataStream.subscribe``; the listen-key endpoints used here work on the Spot Testnet
and in production.)
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import anyio
import httpx
import orjson
from httpx_ws import AsyncWebSocketSession, aconnect_ws

from algotrade.adapters.binance.signing import API_KEY_HEADER
from algotrade.adapters.binance.trading import ORDER_STATUS
from algotrade.adapters.notices import Notice, Notify, describe, ignore
from algotrade.domain.errors import InvalidInputError, MessagingError
from algotrade.domain.events import OrderStatus
from algotrade.domain.ports import RejectedInput

_KEEP_RAW = 2048


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """One ``executionReport``: cumulative figures plus this event's own trade."""

    client_order_id: str
    exchange_order_id: int
    symbol: str
    status: OrderStatus
    executed_quantity: Decimal  # z
    executed_quote: Decimal  # Z
    last_quantity: Decimal  # l
    commission: Decimal  # n
    commission_asset: str | None  # N
    exchange_ts: int  # E, in nanoseconds
    reason: str  # r


def parse_execution_report(text: str | bytes) -> ExecutionEvent | None:
    """Return the ``executionReport`` a frame carries (``None`` for other events).

    Raises:
        InvalidInputError: the frame is not JSON or misses a field.
    """
    try:
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        if data.get("e") != "executionReport":
            return None
        execution = data["x"]
        client_id = data["C"] if execution == "CANCELED" and data.get("C") else data["c"]
        return ExecutionEvent(
            client_order_id=str(client_id),
            exchange_order_id=int(data["i"]),
            symbol=str(data["s"]),
            status=ORDER_STATUS[data["X"]],
            executed_quantity=Decimal(data["z"]),
            executed_quote=Decimal(data["Z"]),
            last_quantity=Decimal(data["l"]),
            commission=Decimal(data["n"]),
            commission_asset=data.get("N"),
            exchange_ts=int(data["E"]) * 1_000_000,
            reason="" if data.get("r") in (None, "NONE") else str(data["r"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation) as e:
        raise InvalidInputError(f"malformed executionReport: {e!r}") from None


@dataclass
class UserStreamStats:
    """What the stream did: for logs, metrics and tests."""

    connections: int = 0
    connected: bool = False
    events: int = 0
    rejected: int = 0
    expired_keys: int = 0
    keepalives: int = 0
    last_error: str = ""


class BinanceUserStream:
    """Follows the account's execution reports across reconnects."""

    def __init__(
        self,
        rest_url: str,
        stream_url: str,
        api_key: str,
        *,
        keepalive: float = 1800.0,
        watchdog: float = 3900.0,
        timeout: float = 10.0,
        notify: Notify = ignore,
    ) -> None:
        self.notify = notify
        self.rest_url = rest_url.rstrip("/")
        self.stream_url = stream_url.rstrip("/")
        self.keepalive = keepalive
        self.watchdog = watchdog  # no event for that long: assume a half-open socket
        self.stats = UserStreamStats()
        self._http = httpx.AsyncClient(
            base_url=self.rest_url, headers={API_KEY_HEADER: api_key}, timeout=timeout
        )

    def __repr__(self) -> str:
        return f"BinanceUserStream({self.stream_url!r}, api_key=***)"

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def run(
        self,
        handle: Callable[[ExecutionEvent], Awaitable[None]],
        connected: Callable[[], Awaitable[None]],
        stop: anyio.Event,
    ) -> None:
        """Deliver every execution report to ``handle`` until ``stop`` is set."""
        attempt = 0
        while not stop.is_set():
            async with anyio.create_task_group() as tg:

                async def watch_stop(scope: anyio.CancelScope = tg.cancel_scope) -> None:
                    await stop.wait()
                    scope.cancel()

                tg.start_soon(watch_stop)
                delivered = await self._connection(handle, connected)
                tg.cancel_scope.cancel()
            if stop.is_set():
                break
            attempt = 0 if delivered else attempt + 1
            wait = random.uniform(0, min(30.0, 0.5 * 2**attempt))
            lost = "lost" if delivered else "failed"
            fields = {
                "error": self.stats.last_error,
                "attempt": attempt,
                "retry_in": round(wait, 2),
            }
            self.notify(Notice(f"user data stream {lost}", True, fields))
            await anyio.sleep(wait)

    async def _connection(
        self,
        handle: Callable[[ExecutionEvent], Awaitable[None]],
        connected: Callable[[], Awaitable[None]],
    ) -> bool:
        """Run one connection until it ends; return whether it got as far as reconciling."""
        reconciled = False
        try:
            key = await self._listen_key()
            url = f"{self.stream_url}/ws/{key}"
            ws: AsyncWebSocketSession
            async with aconnect_ws(url, self._http) as ws, anyio.create_task_group() as tg:
                self.stats.connections += 1
                self.stats.connected = True
                connection = {"connection": self.stats.connections}
                self.notify(Notice("user data stream connected", False, connection))
                tg.start_soon(self._keep_alive, key)
                await connected()
                reconciled = True
                while True:
                    try:
                        text = await ws.receive_text(timeout=self.watchdog)
                    except TimeoutError:
                        self.stats.last_error = f"no event for {self.watchdog:g}s"
                        break
                    if '"listenKeyExpired"' in text:
                        self.stats.expired_keys += 1
                        self.stats.last_error = "listen key expired"
                        break
                    await self._on_frame(text, handle)
                tg.cancel_scope.cancel()
        except Exception as e:  # any failure of a connection means "reconnect"
            self.stats.last_error = describe(e)
        finally:
            self.stats.connected = False
        return reconciled

    async def _on_frame(
        self, text: str, handle: Callable[[ExecutionEvent], Awaitable[None]]
    ) -> None:
        try:
            event = parse_execution_report(text)
        except InvalidInputError as e:
            self.stats.rejected += 1
            reject = RejectedInput("binance-user-stream", "websocket", str(e), text[:_KEEP_RAW])
            self.notify(Notice("input rejected", True, dataclasses.asdict(reject)))
            return
        if event is not None:
            self.stats.events += 1
            await handle(event)

    async def _listen_key(self) -> str:
        try:
            response = await self._http.post("/api/v3/userDataStream")
        except httpx.HTTPError as e:
            raise MessagingError(f"no listen key: {describe(e)}") from None
        if response.status_code != 200:  # Binance says why: {"code": -2015, "msg": ...}
            raise MessagingError(
                f"no listen key: HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            return str(orjson.loads(response.content)["listenKey"])
        except (KeyError, TypeError, orjson.JSONDecodeError) as e:
            raise MessagingError(f"no listen key in {response.text[:200]!r}: {e!r}") from None

    async def _keep_alive(self, key: str) -> None:
        while True:
            await anyio.sleep(self.keepalive)
            response = await self._http.put("/api/v3/userDataStream", params={"listenKey": key})
            if response.status_code >= 400:
                raise MessagingError(f"listen key keep-alive refused: HTTP {response.status_code}")
            self.stats.keepalives += 1
