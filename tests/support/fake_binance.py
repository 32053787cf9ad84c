"""A fake Binance spot exchange on 127.0.0.1: combined-stream WebSocket and REST depth.

It serves a synthetic market (an order book per symbol on a fixed price grid, changed a
few levels at a time, with contiguous update ids and aggregate trades) or a recorded
session, and answers ``GET /api/v3/depth`` with the book as it stands (or the recorded
snapshot). Tests drive faults through its methods: drop every connection, go silent (a
half-open socket), skip update ids, send raw (malformed, oversized) frames, announce
``serverShutdown``, answer REST with 429 or 5xx, and ping.

One ``websockets`` server listens on one port: WebSocket upgrades on ``/stream``, plain
HTTP for the REST paths.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

TICK = Decimal("0.01")


@dataclass
class _Book:
    """One symbol's synthetic book: quantities on a fixed grid around ``mid``."""

    symbol: str
    mid: Decimal
    rng: random.Random
    update_id: int = 1_000_000
    trade_id: int = 5_000_000
    history: list[dict[str, Any]] = field(default_factory=list)
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k in range(1, 41):
            self.bids[self.mid - k * TICK] = Decimal(self.rng.randint(1, 900)) / 100
            self.asks[self.mid + k * TICK] = Decimal(self.rng.randint(1, 900)) / 100

    def step(self, now_ms: int) -> dict[str, Any]:
        """Change a few levels; return the depthUpdate payload."""
        changes: dict[str, list[list[str]]] = {"b": [], "a": []}
        for _ in range(self.rng.randint(2, 8)):
            side, key = (self.bids, "b") if self.rng.random() < 0.5 else (self.asks, "a")
            k = self.rng.randint(1, 40)
            price = self.mid - k * TICK if key == "b" else self.mid + k * TICK
            qty = Decimal(0) if self.rng.random() < 0.2 else Decimal(self.rng.randint(1, 900)) / 100
            side[price] = qty
            changes[key].append([str(price), str(qty)])
        first = self.update_id + 1
        self.update_id += self.rng.randint(1, 4)
        return {
            "e": "depthUpdate", "E": now_ms, "s": self.symbol,
            "U": first, "u": self.update_id, "b": changes["b"], "a": changes["a"],
        }  # fmt: skip

    def trade(self, now_ms: int) -> dict[str, Any]:
        """Return the next aggTrade payload (and keep it for GET /api/v3/aggTrades)."""
        self.trade_id += 1
        payload = {
            "e": "aggTrade", "E": now_ms, "s": self.symbol, "a": self.trade_id,
            "p": str(self.mid), "q": "0.01", "f": 1, "l": 1, "T": now_ms, "m": True, "M": True,
        }  # fmt: skip
        self.history.append({k: v for k, v in payload.items() if k not in ("e", "E", "s")})
        if len(self.history) > 10_000:
            del self.history[:1000]
        return payload

    def snapshot(self, limit: int) -> dict[str, Any]:
        """Return the REST depth body of the book as it stands."""
        bids = sorted(((p, q) for p, q in self.bids.items() if q), reverse=True)[:limit]
        asks = sorted((p, q) for p, q in self.asks.items() if q)[:limit]
        return {
            "lastUpdateId": self.update_id,
            "bids": [[str(p), str(q)] for p, q in bids],
            "asks": [[str(p), str(q)] for p, q in asks],
        }


class FakeBinance:
    """The fake exchange. Use ``async with FakeBinance(...) as fake:``; see the module doc."""

    def __init__(
        self,
        symbols: tuple[str, ...] = ("BTCUSDT",),
        *,
        rate: float = 100.0,
        seed: int = 1,
        recording: Path | None = None,
        clock_offset: float = 0.0,
    ) -> None:
        self.symbols = symbols
        self.clock_offset_ms = int(clock_offset * 1000)
        """The exchange's clock less this machine's, in ms (its event times carry it)."""
        self.rate = rate
        rng = random.Random(seed)
        self.books = {s: _Book(s, Decimal(30_000 + 1000 * i), rng) for i, s in enumerate(symbols)}
        self.recording = recording
        self._recorded_snapshots: dict[str, bytes] = {}
        self.connections: set[ServerConnection] = set()
        self.opened = 0
        self.refused_streams: list[int] = []
        """The stream counts of connections refused for asking more than Binance allows."""
        self.depth_requests: list[str] = []
        self.trade_requests: list[tuple[str, int, int]] = []
        self.kline_requests: list[dict[str, str]] = []
        self.rest_failures: list[tuple[int, float | None]] = []
        self.silent_until = 0.0
        self.paused = False
        self.sent = 0
        self._server: Server | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._stack = contextlib.AsyncExitStack()
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> FakeBinance:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            max_size=None,
            ping_interval=None,
        )
        self.port = self._server.sockets[0].getsockname()[1] if self._server.sockets else 0
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._tg.start_soon(self._market)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._stack.aclose()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def now_ms(self) -> int:
        """Return the exchange's time in ms (this machine's, moved by the clock offset)."""
        return _ms() + self.clock_offset_ms

    @property
    def ws_url(self) -> str:
        """Return the WebSocket base URL (what ALGOTRADE_BINANCE_WS_URL takes)."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        """Return the REST base URL (what ALGOTRADE_BINANCE_REST_URL takes)."""
        return f"http://127.0.0.1:{self.port}"

    # --- faults -----------------------------------------------------------------------------

    def drop(self) -> None:
        """Cut every connection at once, without a closing handshake."""
        for connection in list(self.connections):
            connection.transport.abort()

    def silence(self, seconds: float) -> None:
        """Stop sending for ``seconds`` while keeping sockets open (frames are lost)."""
        self.silent_until = time.monotonic() + seconds

    def pause(self, paused: bool = True) -> None:
        """Stop (or restart) the synthetic market: no new frames while paused."""
        self.paused = paused

    def levels(self, symbol: str) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        """Return the non-empty levels of ``symbol``'s book (bids, asks)."""
        book = self.books[symbol]
        return (
            {p: q for p, q in book.bids.items() if q},
            {p: q for p, q in book.asks.items() if q},
        )

    def skip_trades(self, symbol: str, count: int) -> None:
        """Trade ``count`` times without sending: the ids exist only over REST."""
        for _ in range(count):
            self.books[symbol].trade(self.now_ms())

    def skip(self, symbol: str, ids: int) -> None:
        """Advance ``symbol``'s update id by ``ids`` without sending them: a gap."""
        self.books[symbol].update_id += ids

    async def send_raw(self, text: str) -> None:
        """Send one raw text frame to every connection."""
        for connection in list(self.connections):
            with contextlib.suppress(Exception):
                await connection.send(text)

    async def server_shutdown(self) -> None:
        """Announce a shutdown, as Binance does before disconnecting for maintenance."""
        await self.send_raw(orjson.dumps({"e": "serverShutdown", "E": self.now_ms()}).decode())

    async def ping(self) -> None:
        """Ping every connection (a client must answer with a pong)."""
        for connection in list(self.connections):
            with contextlib.suppress(Exception):
                await connection.ping()

    def fail_rest(self, status: int, *, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``times`` REST requests with ``status`` (and Retry-After)."""
        self.rest_failures.extend([(status, retry_after)] * times)

    # --- serving ----------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/stream":
            streams = [x for v in parse_qs(url.query).get("streams", []) for x in v.split("/")]
            if len(streams) > MAX_STREAMS:  # Binance: 1,024 streams a connection at most
                self.refused_streams.append(len(streams))
                return self._respond(HTTPStatus.BAD_REQUEST, {"code": -1, "msg": "too many"})
            return None  # a WebSocket upgrade
        if url.path == "/api/v3/aggTrades" and not self.rest_failures:
            book = self.books.get(query.get("symbol", ""))
            if book is None:
                return self._respond(HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid"})
            start, limit = int(query.get("fromId", "0")), int(query.get("limit", "500"))
            self.trade_requests.append((book.symbol, start, limit))
            found = [t for t in book.history if t["a"] >= start][:limit]
            return self._respond(HTTPStatus.OK, found)
        if url.path == "/api/v3/klines" and not self.rest_failures:
            return self._klines(query)
        if url.path not in ("/api/v3/depth", "/api/v3/aggTrades", "/api/v3/klines"):
            return self._respond(HTTPStatus.NOT_FOUND, {"code": -1, "msg": "not found"})
        if self.rest_failures:
            status, retry_after = self.rest_failures.pop(0)
            response = self._respond(HTTPStatus(status), {"code": -1003, "msg": "injected"})
            if retry_after is not None:
                response.headers["Retry-After"] = str(retry_after)
            return response
        symbol = query.get("symbol", "")
        self.depth_requests.append(symbol)
        if symbol in self._recorded_snapshots:
            return self._respond(HTTPStatus.OK, raw=self._recorded_snapshots[symbol])
        book = self.books.get(symbol)
        if book is None:
            return self._respond(HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol."})
        return self._respond(HTTPStatus.OK, book.snapshot(int(query.get("limit", "1000"))))

    def _klines(self, query: dict[str, str]) -> Response:
        """Closed klines as Binance sends them: a deterministic wave of the open time."""
        book = self.books.get(query.get("symbol", ""))
        size_ms = _INTERVAL_MS.get(query.get("interval", ""))
        if book is None or size_ms is None:
            return self._respond(HTTPStatus.BAD_REQUEST, {"code": -1120, "msg": "Invalid"})
        self.kline_requests.append(dict(query))
        limit = min(int(query.get("limit", "500")), 1000)
        end = min(int(query.get("endTime", str(self.now_ms()))), self.now_ms())
        last_open = (end + 1) // size_ms * size_ms - size_ms  # the last kline closed by end
        rows = []
        for i in range(limit - 1, -1, -1):
            open_ms = last_open - i * size_ms
            close = kline_close(book.symbol, open_ms, size_ms)
            rows.append([open_ms, f"{close:.2f}", f"{close + 5:.2f}", f"{close - 5:.2f}",
                         f"{close:.2f}", "1.5", open_ms + size_ms - 1, "45000.0", 10, "0.7",
                         "21000.0", "0"])  # fmt: skip
        return self._respond(HTTPStatus.OK, rows)

    @staticmethod
    def _respond(status: HTTPStatus, body: Any = None, *, raw: bytes | None = None) -> Response:
        data = raw if raw is not None else orjson.dumps(body)
        headers = Headers(
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return Response(status.value, status.phrase, headers, data)

    async def _handler(self, connection: ServerConnection) -> None:
        self.connections.add(connection)
        self.opened += 1
        try:
            await connection.wait_closed()
        finally:
            self.connections.discard(connection)

    async def _broadcast(self, frames: list[bytes]) -> None:
        """Send each frame to the connections subscribed to its stream, as Binance does.

        ``sent`` counts the frames some connection asked for (all of them while nobody is
        connected).
        """
        if time.monotonic() < self.silent_until:
            return
        streams = [_STREAM.search(frame) for frame in frames]
        connections = list(self.connections)
        wanted = [_subscribed(connection) for connection in connections]
        for connection, streams_wanted in zip(connections, wanted, strict=True):
            for frame, found in zip(frames, streams, strict=True):
                if found is not None and found[1].decode() not in streams_wanted:
                    continue
                try:
                    await connection.send(frame.decode())
                except Exception:  # a dropped client: its handler cleans up
                    break
        if not connections:
            self.sent += len(frames)
            return
        union = set().union(*wanted)
        self.sent += sum(1 for f in streams if f is None or f[1].decode() in union)

    async def _market(self) -> None:
        if self.recording is not None:
            await self._replay(self.recording)
            return
        rng = random.Random(7)
        period = max(1.0 / self.rate, 0.01)  # high rates send several steps per tick
        steps = max(1, round(self.rate * period))
        next_tick = time.monotonic()
        while True:
            next_tick += period
            await anyio.sleep(max(0.0, next_tick - time.monotonic()))
            if self.paused:
                continue  # the market moves on whether anyone listens or not
            now = self.now_ms()
            frames = []
            for _ in range(steps):
                for symbol, book in self.books.items():
                    name = symbol.lower()
                    frames.append(_frame(f"{name}@depth@100ms", book.step(now)))
                    if rng.random() < 0.5:
                        frames.append(_frame(f"{name}@aggTrade", book.trade(now)))
            await self._broadcast(frames)

    async def _replay(self, path: Path) -> None:
        """Send the recorded frames in order once a client is connected, as fast as asked."""
        frames: list[bytes] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if " -> " in line and line.startswith("http"):
                url, _, rest = line.partition(" -> ")
                symbol = parse_qs(urlsplit(url).query)["symbol"][0]
                self._recorded_snapshots[symbol] = rest.split(": ", 1)[1].encode()
            elif line[:1].isdigit():
                frames.append(line.split(": ", 1)[1].encode())
        while not self.connections:
            await anyio.sleep(0.01)
        period = 1.0 / self.rate
        for i in range(0, len(frames), 10):
            await self._broadcast(frames[i : i + 10])
            await anyio.sleep(period * 10)


MAX_STREAMS = 1024
"""Streams one connection may ask for (Binance's limit)."""
_STREAM = re.compile(rb'"stream":\s*"([^"]+)"')


def _subscribed(connection: ServerConnection) -> set[str]:
    """Return the streams a connection asked for in ``/stream?streams=a/b/c``."""
    request = connection.request
    if request is None:
        return set()
    query = parse_qs(urlsplit(request.path).query)
    return {s for value in query.get("streams", []) for s in value.split("/")}


_INTERVAL_MS = {"1s": 1000, "1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}


def kline_close(symbol: str, open_ms: int, size_ms: int) -> float:
    """Return the close of the fake exchange's kline opening at ``open_ms``: a slow wave."""
    step = open_ms // size_ms
    return 30_000 + 1_000 * math.sin(step / 40) + (len(symbol) % 3) * 10


def _ms() -> int:
    return time.time_ns() // 1_000_000


def _frame(stream: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"stream": stream, "data": data})


async def _serve_forever(rate: float, port_file: str) -> None:
    async with FakeBinance(("BTCUSDT",), rate=rate) as fake:
        Path(port_file).write_text(str(fake.port), encoding="utf-8")
        await anyio.sleep_forever()


if __name__ == "__main__":  # python -m tests.support.fake_binance RATE PORT_FILE
    import sys

    anyio.run(_serve_forever, float(sys.argv[1]), sys.argv[2])
