"""Live Binance market data: one combined-stream WebSocket, REST snapshots, never a silent stall.

:class:`BinanceFeed` is a :class:`~algotrade.domain.ports.MarketFeed`. It subscribes to
``<symbol>@depth@100ms`` and ``<symbol>@aggTrade`` for every symbol on combined-stream
connections (``/stream?streams=...``, httpx-ws): one for up to 512 symbols, another for
each further 512, as Binance serves at most 1,024 streams a connection; each connection is
kept up on its own (below). It fetches depth snapshots over REST (httpx) when the
collector asks for one. Staying connected:

* any close, network error or **silence** (no frame for ``watchdog`` seconds: a half-open
  socket sends nothing) ends the connection; the next one is opened after an exponential
  backoff with full jitter, reset once a connection delivers data;
* a ``serverShutdown`` event, or a connection older than ``lifetime`` (Binance cuts every
  connection at 24 hours), opens a **replacement** connection beside the old one; once the
  new one delivers, the old one closes. Events of both pass one filter that forwards each
  depth diff and trade once, in update-id order, so the switch-over loses nothing and
  doubles nothing;
* pings are answered (httpx-ws answers them), and the client pings too;
* REST answers 429 or 418 wait ``Retry-After`` seconds; 5xx and network errors back off.

A frame that cannot be understood is counted and set aside with its raw text (up to 2 KiB)
and the stream goes on. Each connection opened, lost or failed and each REST request that
failed is told to ``notify`` (a :class:`~algotrade.adapters.notices.Notice`, which the
service logs), with the error and the wait before the next try; the last error is kept for
the health checks.

A gap in update ids after a reconnect is not this class's business: the collector's book
synchroniser sees it, stores a gap event and asks for a snapshot.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import anyio
import anyio.abc
import httpx
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from httpx_ws import AsyncWebSocketSession, aconnect_ws

from algotrade.adapters.binance.endpoints import DEFAULT_REST_URL, DEFAULT_WS_URL
from algotrade.adapters.binance.messages import (
    parse_depth_snapshot,
    parse_frame,
    parse_rest_agg_trades,
    retry_after,
)
from algotrade.adapters.notices import Notice, Notify, describe, ignore
from algotrade.domain.errors import InvalidInputError, RecorderError, find_error
from algotrade.domain.events import DepthDiffReceived, MarketEvent, TradeReceived
from algotrade.domain.ports import Clock, RejectedInput

_KEEP_RAW = 2048
_KINDS = ("depth@100ms", "aggTrade")
MAX_STREAMS = 1024
"""Streams Binance serves on one connection at most."""


@dataclass
class FeedStats:
    """What the feed did: for progress lines, health and metrics."""

    frames: int = 0
    events: int = 0
    rejected: int = 0
    connections: int = 0
    reconnects: int = 0
    silences: int = 0
    shutdown_notices: int = 0
    replacements: int = 0
    snapshots: int = 0
    rest_retries: int = 0
    duplicates_filtered: int = 0
    backfilled: int = 0
    last_frame_at: float = 0.0
    """Monotonic time of the last frame (0: none yet)."""
    clock_skew_ms: float | None = None
    """Receive time minus exchange time of the latest depth diff in ms; ``None`` before the
    first."""


class BinanceFeed:
    """Binance spot market data for ``symbols``; see the module documentation."""

    def __init__(
        self,
        symbols: Sequence[str],
        clock: Clock,
        *,
        ws_url: str = DEFAULT_WS_URL,
        rest_url: str = DEFAULT_REST_URL,
        depth_limit: int = 5000,
        first_diff_wait: float = 3.0,
        watchdog: float = 10.0,
        lifetime: float = 23.5 * 3600,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_frame_bytes: int = 1 << 20,
        max_streams: int = MAX_STREAMS,
        recorder: Callable[[str], None] | None = None,
        notify: Notify = ignore,
    ) -> None:
        self._symbols = tuple(s.upper() for s in symbols)
        self.clock = clock
        per = max(1, max_streams // len(_KINDS))  # a symbol's streams share a connection
        self.urls = tuple(
            f"{ws_url.rstrip('/')}/stream?streams="
            + "/".join(f"{s.lower()}@{kind}" for s in self._symbols[i : i + per] for kind in _KINDS)
            for i in range(0, max(1, len(self._symbols)), per)
        )
        """One combined-stream URL a connection, each with at most ``max_streams`` streams."""
        self.rest_url = rest_url.rstrip("/")
        self.depth_limit = depth_limit
        self.first_diff_wait = first_diff_wait
        """Seconds a snapshot waits for its symbol's first diff (then it is fetched anyway:
        its answer tells whether the exchange lists the symbol)."""
        self.watchdog = watchdog
        self.lifetime = lifetime
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_frame_bytes = max_frame_bytes
        self.recorder = recorder
        self.notify = notify
        self.stats = FeedStats()
        self._rejects: list[RejectedInput] = []
        self._send: MemoryObjectSendStream[list[MarketEvent]] | None = None
        self._receive: MemoryObjectReceiveStream[list[MarketEvent]] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._http: httpx.AsyncClient | None = None
        self._subscribed = frozenset(self._symbols)
        self._last_depth: dict[str, int] = {}
        self._last_trade: dict[str, int] = {}
        self._first_diff: dict[str, anyio.Event] = {}
        self.last_error = ""
        """The latest connection or REST failure (``""``: none yet)."""
        self.last_error_at = 0.0
        """Monotonic time of :attr:`last_error`."""
        self._wanted: list[str] = []

    @property
    def symbols(self) -> tuple[str, ...]:
        """Return the subscribed symbols."""
        return self._symbols

    @property
    def rejected(self) -> int:
        """Return how many frames or REST bodies were set aside."""
        return self.stats.rejected

    def drain_rejects(self) -> list[RejectedInput]:
        """Return (and forget) what was set aside since the last call."""
        out, self._rejects = self._rejects, []
        return out

    def _reject(self, where: str, reason: str, raw: str | bytes) -> None:
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        self.stats.rejected += 1
        self._rejects.append(RejectedInput("binance", where, reason, text[:_KEEP_RAW]))

    # --- the port -------------------------------------------------------------------------

    async def __aenter__(self) -> BinanceFeed:
        """Start the connection (and any snapshot asked for) in a task group of its own."""
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self._http = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
            send, receive = anyio.create_memory_object_stream[list[MarketEvent]](1024)
            stack.push_async_callback(receive.aclose)
            stack.push_async_callback(send.aclose)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)  # runs first: stop the connections
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self._send, self._receive = stack, send, receive
        for url in self.urls:
            self._tg.start_soon(self._supervise, url)
        for symbol in self._wanted:
            self._tg.start_soon(self._fetch_snapshot, symbol)
        self._wanted.clear()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the connections and the HTTP client."""
        stack, self._stack = self._stack, None
        self._send = self._tg = self._http = None
        if stack is not None:
            await stack.aclose()

    async def batches(self) -> AsyncIterator[Sequence[MarketEvent]]:
        """Yield events as they arrive, for ever (inside ``async with feed:``)."""
        if self._receive is None:
            raise RuntimeError("use the feed inside 'async with feed:' (it runs connections)")
        async for batch in self._receive:
            yield batch

    async def request_snapshot(self, symbol: str) -> None:
        """Fetch a depth snapshot of ``symbol`` in the background; it arrives in the batches."""
        if self._tg is None:
            self._wanted.append(symbol.upper())  # asked before the feed started
        else:
            self._tg.start_soon(self._fetch_snapshot, symbol.upper())

    # --- connections ----------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2**attempt)]."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 30))
        return random.uniform(0.0, ceiling)

    async def _supervise(self, url: str, first_frame: anyio.Event | None = None) -> None:
        """Keep the connection to ``url`` up, for ever (or until a replacement takes over).

        ``first_frame`` (a replacement's supervisor) is set when its first connection
        delivers, which tells the connection it replaces to close.
        """
        attempt = 0
        while True:
            outcome, error = await self._connection(url, first_frame)
            first_frame = None
            if outcome == "replaced":
                return  # the replacement's supervisor carries on
            self.stats.reconnects += 1
            attempt = 0 if outcome == "delivered" else attempt + 1
            wait = self._backoff(attempt)
            lost = "lost" if outcome == "delivered" else "failed"
            self._failed(f"market data connection {lost}", error, attempt=attempt, retry_in=wait)
            await anyio.sleep(wait)

    def _failed(self, message: str, error: str, *, retry_in: float, **fields: object) -> None:
        """Keep ``error`` as the last one and tell it, with the wait before the next try."""
        self.last_error, self.last_error_at = error, self.clock.monotonic()
        self.notify(
            Notice(message, True, {"error": error, "retry_in": round(retry_in, 2), **fields})
        )

    def _replace(self, url: str) -> anyio.Event:
        """Start a replacement connection beside the current one; return its first-frame event."""
        assert self._tg is not None
        first_frame = anyio.Event()
        self.stats.replacements += 1
        self._tg.start_soon(self._supervise, url, first_frame)
        return first_frame

    async def _connection(self, url: str, first_frame: anyio.Event | None) -> tuple[str, str]:
        """Run one connection until it ends: ``delivered``, ``failed`` or ``replaced``, and
        why it ended."""
        assert self._http is not None
        delivered = False
        error = "closed"
        replaced: anyio.Event | None = None  # set once our replacement delivers
        try:
            async with aconnect_ws(
                url,
                self._http,
                max_message_size_bytes=self.max_frame_bytes,
                keepalive_ping_interval_seconds=20.0,
                keepalive_ping_timeout_seconds=20.0,
                session_class=AsyncWebSocketSession,
            ) as ws:
                self.stats.connections += 1
                count = self.stats.connections
                self.notify(
                    Notice("market data connected", False, {"connection": count, "url": url})
                )
                opened = self.clock.monotonic()
                if self.recorder is not None:
                    self._record(f"{url} <-> {self.clock.now_ns() / 1e9:.6f}")
                while True:
                    if replaced is not None and replaced.is_set():
                        return "replaced", ""
                    if replaced is None and self.clock.monotonic() - opened > self.lifetime:
                        replaced = self._replace(url)  # before Binance's 24-hour cut-off
                    try:
                        text = await ws.receive_text(timeout=self.watchdog)
                    except TimeoutError:
                        self.stats.silences += 1
                        error = f"no frame for {self.watchdog:g}s (watchdog)"
                        break
                    self.stats.frames += 1
                    self.stats.last_frame_at = self.clock.monotonic()
                    delivered = True
                    if first_frame is not None:
                        first_frame.set()
                    if '"serverShutdown"' in text:
                        self.stats.shutdown_notices += 1
                        if replaced is None:
                            replaced = self._replace(url)
                        continue
                    await self._on_frame(text)
        except Exception as e:  # any failure of a connection means "reconnect"...
            failed = find_error(e, RecorderError)  # (httpx-ws wraps it in a group)
            if failed is not None:
                raise failed from None  # ...but the recorder's: reconnecting would lose more
            error = describe(e)
        if replaced is not None:
            return "replaced", ""  # dropped during a switch-over: the replacement carries on
        return "delivered" if delivered else "failed", error

    def _record(self, line: str) -> None:
        """Hand a line to the recorder; its failure ends the feed (:class:`RecorderError`)."""
        assert self.recorder is not None
        try:
            self.recorder(line)
        except RecorderError:
            raise
        except Exception as e:
            raise RecorderError(f"cannot record: {e}") from e

    async def _on_frame(self, text: str) -> None:
        now = self.clock.now_ns()
        if self.recorder is not None:
            self._record(f"{now / 1e9:.6f}: {_one_line(text)}")
        try:
            event = parse_frame(text, now)
        except InvalidInputError as e:
            self._reject("websocket", str(e), text)
            return
        if event is None:
            return
        if event.symbol not in self._subscribed:
            self._reject("websocket", f"frame for {event.symbol}, not subscribed", text)
            return
        # One filter for every connection: each diff and trade goes out once, in order.
        if isinstance(event, DepthDiffReceived):
            last = self._last_depth.get(event.symbol, 0)
            if event.final_update_id <= last:
                self.stats.duplicates_filtered += 1
                return
            self._last_depth[event.symbol] = event.final_update_id
            self.stats.clock_skew_ms = (event.receive_ts - event.exchange_ts) / 1e6
        elif isinstance(event, TradeReceived):
            last = self._last_trade.get(event.symbol, 0)
            if event.trade_id <= last:
                self.stats.duplicates_filtered += 1
                return
            self._last_trade[event.symbol] = event.trade_id
        self.stats.events += 1
        assert self._send is not None
        await self._send.send([event])
        if isinstance(event, DepthDiffReceived):
            self._streaming(event.symbol).set()

    def _streaming(self, symbol: str) -> anyio.Event:
        """Return the event set once ``symbol``'s first diff was handed over."""
        found = self._first_diff.get(symbol)
        if found is None:
            found = self._first_diff[symbol] = anyio.Event()
        return found

    # --- REST -----------------------------------------------------------------------------

    async def backfill_trades(self, symbol: str, first_id: int, last_id: int) -> None:
        """Fetch the aggregate trades ``first_id``..``last_id`` in the background.

        They arrive in the batches (out of order with the live ones, which the collector
        holds meanwhile). What cannot be fetched after a few tries stays missing: the
        collector records it as a gap.
        """
        if self._tg is not None:
            self._tg.start_soon(self._fetch_trades, symbol.upper(), first_id, last_id)

    async def _rest_get(
        self, path: str, params: dict[str, str | int], *, attempts: int | None = None
    ) -> tuple[httpx.Response, int] | None:
        """GET ``path`` until it answers 200 (recorded, with its receive time).

        429/418 wait ``Retry-After`` seconds; 5xx and network errors back off. ``None``
        after ``attempts`` failures (``None``: try for ever).
        """
        assert self._http is not None
        url = f"{self.rest_url}{path}"
        attempt = 0
        while attempts is None or attempt < attempts:
            try:
                response = await self._http.get(url, params=params)
            except httpx.HTTPError as e:
                error = describe(e)
                wait = self._backoff(attempt)
            else:
                if response.status_code == 200:
                    now = self.clock.now_ns()
                    if self.recorder is not None:
                        self._record(
                            f"{response.request.url} -> {now / 1e9:.6f}: {_one_line(response.text)}"
                        )
                    return response, now
                if response.status_code in (418, 429):
                    wait = retry_after(response.headers, self._backoff(attempt) + 1.0)
                else:
                    wait = self._backoff(attempt)
                # Binance says why in the body: {"code": -1121, "msg": "Invalid symbol."}
                error = f"HTTP {response.status_code}: {_one_line(response.text)[:200]}"
            self.stats.rest_retries += 1
            attempt += 1
            self._failed(
                "REST request failed", error, retry_in=wait, url=url, params=params, attempt=attempt
            )
            await anyio.sleep(wait)
        return None

    async def _fetch_trades(self, symbol: str, first_id: int, last_id: int) -> None:
        assert self._send is not None
        next_id = first_id
        while next_id <= last_id:
            params: dict[str, str | int] = {
                "symbol": symbol, "fromId": next_id, "limit": min(1000, last_id - next_id + 1),
            }  # fmt: skip
            answered = await self._rest_get("/api/v3/aggTrades", params, attempts=5)
            if answered is None:
                return  # the collector records what is still missing as a gap
            response, now = answered
            try:
                trades = parse_rest_agg_trades(symbol, response.content, now)
            except InvalidInputError as e:
                self._reject(f"GET {response.request.url}", str(e), response.content)
                return
            trades = [t for t in trades if next_id <= t.trade_id <= last_id]
            if not trades:
                return  # the exchange has no more of them
            self.stats.backfilled += len(trades)
            await self._send.send(list(trades))
            next_id = max(t.trade_id for t in trades) + 1

    async def _fetch_snapshot(self, symbol: str) -> None:
        """GET /api/v3/depth until a usable snapshot comes; send it.

        Not before the symbol's first diff was handed over (Binance's procedure: buffer
        the stream, then fetch the snapshot), or :attr:`first_diff_wait` seconds: the
        diffs before it tell the collector the exchange's clock, which the snapshot,
        stamped here on arrival, is set to.
        """
        with anyio.move_on_after(self.first_diff_wait):
            await self._streaming(symbol).wait()
        assert self._send is not None
        params: dict[str, str | int] = {"symbol": symbol, "limit": self.depth_limit}
        attempt = 0
        while True:
            answered = await self._rest_get("/api/v3/depth", params)
            assert answered is not None  # no attempt limit
            response, now = answered
            try:
                snapshot = parse_depth_snapshot(symbol, response.content, now)
            except InvalidInputError as e:
                self._reject(f"GET {response.request.url}", str(e), response.content)
                attempt += 1
                await anyio.sleep(self._backoff(attempt))
                continue
            self.stats.snapshots += 1
            await self._send.send([snapshot])
            return


def _one_line(text: str) -> str:
    """Return ``text`` on one line (Binance sends compact JSON; anything else is re-dumped)."""
    if "\n" not in text:
        return text
    try:
        return orjson.dumps(orjson.loads(text)).decode()
    except orjson.JSONDecodeError:
        return text.replace("\n", " ")
