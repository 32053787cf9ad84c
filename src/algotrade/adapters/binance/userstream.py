"""Binance's user data stream: the account's ``executionReport`` events, reconnecting for ever.

Binance Spot serves it on its WebSocket API (``wss://ws-api.binance.com:443/ws-api/v3``;
the listen-key endpoints were switched off for Spot on 2026-02-20). On each connection
the stream sends ``userDataStream.subscribe.signature`` (the API key, a timestamp and a
signature over both, HMAC or Ed25519 as for REST) and waits for Binance's answer; the
events then arrive on the same socket as ``{"subscriptionId": N, "event": {...}}``. A
``ping`` request every ``keepalive`` seconds proves the session alive end to end.

After every (re)connection the ``connected`` callback runs *after* the subscription is
accepted, so the caller can reconcile its open orders over REST knowing that any later
change arrives on the socket: nothing falls between the two. An ``eventStreamTerminated``
or ``serverShutdown`` event, a close, a network error, a refused subscription or silence
longer than ``watchdog`` reconnects (backoff with jitter); a refusal for the clock
(``-1021``) re-reads the exchange's time first. A frame that cannot be understood is
counted, set aside and skipped. Each connection opened, lost or failed and each frame set
aside is told to ``notify`` (a :class:`~algotrade.adapters.notices.Notice`, which the
service logs).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import anyio
import httpx
import orjson
from httpx_ws import AsyncWebSocketSession, aconnect_ws

from algotrade.adapters.binance.signing import DEFAULT_RECV_WINDOW_MS, Signer, signed_params
from algotrade.adapters.binance.trading import ORDER_STATUS, TIMESTAMP
from algotrade.adapters.notices import Notice, Notify, describe, ignore
from algotrade.domain.broker import ExecutionEvent
from algotrade.domain.errors import ExchangeError, InvalidInputError
from algotrade.domain.ports import RejectedInput, Stop

_KEEP_RAW = 2048
WS_API_PATH = "/ws-api/v3"
#: Events after which the subscription (or the server) is gone: reconnect.
_ENDINGS = frozenset({"eventStreamTerminated", "serverShutdown"})


def read_frame(text: str | bytes) -> tuple[str, ExecutionEvent | None]:
    """Return what a frame of the stream says, decoded once: the name of its event when
    that ends the subscription (else ``""``), and the ``executionReport`` it carries (else
    ``None``: other events, answers to requests). The event may come bare or wrapped
    (``{"subscriptionId": N, "event": {...}}``, as the WebSocket API sends it).

    Raises:
        InvalidInputError: the frame is not JSON, or a report misses a field.
    """
    try:
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        if "subscriptionId" in data:  # the WebSocket API wraps each event
            data = data["event"]
            if not isinstance(data, dict):
                raise TypeError("event is not an object")
        name = data.get("e")
        if name != "executionReport":
            return (name if isinstance(name, str) and name in _ENDINGS else ""), None
        execution = data["x"]
        client_id = data["C"] if execution == "CANCELED" and data.get("C") else data["c"]
        return "", ExecutionEvent(
            client_order_id=str(client_id),
            exchange_order_id=int(data["i"]),
            symbol=str(data["s"]),
            status=ORDER_STATUS[data["X"]],
            executed_quantity=_finite(data["z"]),
            executed_quote=_finite(data["Z"]),
            last_quantity=_finite(data["l"]),
            commission=_finite(data["n"]),
            commission_asset=data.get("N"),
            exchange_ts=int(data["E"]) * 1_000_000,
            reason="" if data.get("r") in (None, "NONE") else str(data["r"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation) as e:
        raise InvalidInputError(f"malformed executionReport: {e!r}") from None


def _finite(value: Any) -> Decimal:
    """Return a figure of a report as a decimal; NaN and infinities are no figures.

    Raises:
        ValueError: ``value`` is not a finite decimal.
    """
    number = Decimal(value)  # a wrong type raises TypeError
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite decimal")
    return number


@dataclass
class UserStreamStats:
    """What the stream did: for logs, metrics and tests."""

    connections: int = 0
    connected: bool = False
    events: int = 0
    rejected: int = 0
    terminated: int = 0  # eventStreamTerminated or serverShutdown
    keepalives: int = 0
    last_error: str = ""


class BinanceUserStream:
    """Follows the account's execution reports across reconnects."""

    def __init__(
        self,
        stream_url: str,
        api_key: str,
        signer: Signer,
        *,
        timestamp_ms: Callable[[], int] | None = None,
        resync: Callable[[], Awaitable[None]] | None = None,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        keepalive: float = 30.0,
        watchdog: float = 95.0,
        timeout: float = 10.0,
        notify: Notify = ignore,
    ) -> None:
        """``stream_url``: the WebSocket API's URL (a URL without a path gets
        ``/ws-api/v3``). ``timestamp_ms``: the exchange's time in milliseconds (default:
        this machine's); ``resync``: called before the next attempt when Binance refuses
        the timestamp (the gateway's clock measurement)."""
        url = httpx.URL(stream_url)
        if url.path in ("", "/"):
            stream_url = str(url.copy_with(path=WS_API_PATH))
        self.stream_url = stream_url
        self.notify = notify
        self.keepalive = keepalive
        self.watchdog = watchdog  # no frame for that long: assume a half-open socket
        self.recv_window_ms = recv_window_ms
        self.stats = UserStreamStats()
        self._api_key = api_key
        self._signer = signer
        self._timestamp_ms = timestamp_ms or (lambda: time.time_ns() // 1_000_000)
        self._resync = resync
        self._requests = 0
        self._http = httpx.AsyncClient(timeout=timeout)

    def __repr__(self) -> str:
        return f"BinanceUserStream({self.stream_url!r}, api_key=***)"

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def run(
        self,
        handle: Callable[[ExecutionEvent], Awaitable[None]],
        connected: Callable[[], Awaitable[None]],
        stop: Stop,
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
            ws: AsyncWebSocketSession
            async with (
                aconnect_ws(
                    self.stream_url,
                    self._http,
                    keepalive_ping_interval_seconds=20.0,
                    keepalive_ping_timeout_seconds=20.0,
                ) as ws,
                anyio.create_task_group() as tg,
            ):
                subscription = await self._subscribe(ws)
                self.stats.connections += 1
                self.stats.connected = True
                fields = {"connection": self.stats.connections, "subscription": subscription}
                self.notify(Notice("user data stream connected", False, fields))
                tg.start_soon(self._keep_alive, ws)
                await connected()
                reconciled = True
                while True:
                    try:
                        text = await ws.receive_text(timeout=self.watchdog)
                    except TimeoutError:
                        self.stats.last_error = f"no frame for {self.watchdog:g}s (watchdog)"
                        break
                    try:
                        ended, event = read_frame(text)
                    except InvalidInputError as e:
                        self._reject(text, e)
                        continue
                    if ended:
                        self.stats.terminated += 1
                        self.stats.last_error = f"Binance sent {ended}"
                        break
                    if event is not None:
                        self.stats.events += 1
                        await handle(event)
                tg.cancel_scope.cancel()
        except Exception as e:  # any failure of a connection means "reconnect"
            self.stats.last_error = describe(e)
        finally:
            self.stats.connected = False
        return reconciled

    async def _subscribe(self, ws: AsyncWebSocketSession) -> object:
        """Subscribe this connection to the account's events; return the subscription id.

        Raises:
            ExchangeError: Binance refused (its code and message), or did not answer.
        """
        params = signed_params(
            {"apiKey": self._api_key},
            self._signer,
            timestamp_ms=self._timestamp_ms(),
            recv_window_ms=self.recv_window_ms,
        )
        answer = await self._request(ws, "userDataStream.subscribe.signature", params)
        if answer.get("status") != 200:
            error = answer.get("error")
            code = error.get("code") if isinstance(error, dict) else None
            if code == TIMESTAMP and self._resync is not None:
                await self._resync()
            detail = orjson.dumps(error).decode() if error is not None else "no error given"
            raise ExchangeError(
                f"subscription refused: status {answer.get('status')}: {detail[:200]}"
            )
        result = answer.get("result")
        return result.get("subscriptionId") if isinstance(result, dict) else None

    async def _request(
        self, ws: AsyncWebSocketSession, method: str, params: dict[str, str | int] | None = None
    ) -> dict[str, Any]:
        """Send one request and return its answer (before any event: none is subscribed)."""
        request_id = await self._send(ws, method, params)
        with anyio.move_on_after(self.watchdog):
            while True:
                text = await ws.receive_text()
                try:
                    answer = orjson.loads(text)
                except orjson.JSONDecodeError:
                    answer = None
                if isinstance(answer, dict) and answer.get("id") == request_id:
                    return answer
        raise ExchangeError(f"no answer to {method} in {self.watchdog:g}s")

    async def _send(
        self, ws: AsyncWebSocketSession, method: str, params: dict[str, str | int] | None = None
    ) -> str:
        """Send one request; return its id (its answer carries it)."""
        self._requests += 1
        request_id = f"algotrade-{self._requests}"
        message: dict[str, Any] = {"id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await ws.send_text(orjson.dumps(message).decode())
        return request_id

    def _reject(self, text: str, error: InvalidInputError) -> None:
        """Count a frame that cannot be understood and set it aside (told to ``notify``)."""
        self.stats.rejected += 1
        reject = RejectedInput("binance-user-stream", "websocket", str(error), text[:_KEEP_RAW])
        self.notify(Notice("input rejected", True, dataclasses.asdict(reject)))

    async def _keep_alive(self, ws: AsyncWebSocketSession) -> None:
        """Send a ``ping`` request every ``keepalive`` seconds: its answer is a frame, so a
        quiet account does not trip the watchdog, and a dead session does."""
        while True:
            await anyio.sleep(self.keepalive)
            await self._send(ws, "ping")
            self.stats.keepalives += 1
