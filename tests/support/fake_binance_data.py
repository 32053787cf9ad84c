"""A fake data.binance.vision: kline archives and their ``.CHECKSUM`` files over HTTP on
127.0.0.1, with byte ranges (as the real server, behind its CDN, answers them), and the
faults a download meets: a checksum that does not match, a missing archive, a connection
cut in the middle of a body."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta


def kline_csv(first: date, days: int, *, hours: int = 1, price: float = 100.0) -> str:
    """Return ``days`` days of hourly klines from ``first`` in Binance's CSV layout (no
    header; microsecond timestamps from 2025 on, as Binance's spot files)."""
    rows = []
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    step = timedelta(hours=hours)
    for i in range(days * 24 // hours):
        at = start + i * step
        unit = 1_000_000 if at.year >= 2025 else 1_000
        opened = int(at.timestamp()) * unit
        closed = opened + int(step.total_seconds()) * unit - 1
        level = price + (i % 48 - 24) * 0.5 + (i // 48) * 0.25  # waves, for crossovers
        o, c = f"{level:.2f}", f"{level + 0.1:.2f}"
        high, low = f"{level + 0.3:.2f}", f"{level - 0.2:.2f}"
        rows.append(f"{opened},{o},{high},{low},{c},1.5,{closed},150.0,10,0.7,70.0,0")
    return "\n".join(rows) + "\n"


def zipped(name: str, text: str) -> bytes:
    """Return a zip archive holding ``name`` (a CSV file) with ``text``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, text)
    return out.getvalue()


@dataclass
class FakeArchiveServer:
    """The files it serves (path below the server, ``/data/spot/...``), and its faults."""

    files: dict[str, bytes] = field(default_factory=dict)
    bad_checksums: set[str] = field(default_factory=set)  # paths whose .CHECKSUM lies
    cuts: dict[str, int] = field(default_factory=dict)  # path: bytes sent before a cut (once)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    url: str = ""

    def add_month(self, symbol: str, interval: str, month: date, *, days: int | None = None
                  ) -> str:  # fmt: skip
        """Serve a monthly archive of hourly klines; return its path."""
        days = days or _days_in(month)
        name = f"{symbol}-{interval}-{month:%Y-%m}"
        path = f"/data/spot/monthly/klines/{symbol}/{interval}/{name}.zip"
        self.files[path] = zipped(f"{name}.csv", kline_csv(month, days))
        return path

    def add_day(self, symbol: str, interval: str, day: date) -> str:
        """Serve a daily archive of hourly klines; return its path."""
        name = f"{symbol}-{interval}-{day.isoformat()}"
        path = f"/data/spot/daily/klines/{symbol}/{interval}/{name}.zip"
        self.files[path] = zipped(f"{name}.csv", kline_csv(day, 1))
        return path

    def answer(self, path: str, range_header: str | None) -> tuple[int, dict[str, str], bytes]:
        """Return the status, headers and body of a GET."""
        self.requests.append((path, range_header))
        if path.endswith(".CHECKSUM"):
            body = self.files.get(path.removesuffix(".CHECKSUM"))
            if body is None:
                return 404, {}, b"Not Found"
            digest = hashlib.sha256(body).hexdigest()
            if path.removesuffix(".CHECKSUM") in self.bad_checksums:
                digest = hashlib.sha256(body + b"changed").hexdigest()
            name = path.rsplit("/", 1)[1].removesuffix(".CHECKSUM")
            return 200, {}, f"{digest}  {name}\n".encode()
        body = self.files.get(path)
        if body is None:
            return 404, {}, b"Not Found"
        if range_header and range_header.startswith("bytes="):
            first = int(range_header[6:].split("-", 1)[0])
            if first >= len(body):
                return 416, {"Content-Range": f"bytes */{len(body)}"}, b""
            headers = {"Content-Range": f"bytes {first}-{len(body) - 1}/{len(body)}"}
            return 206, headers, body[first:]
        return 200, {}, body


def _days_in(month: date) -> int:
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (following - month).days


@contextmanager
def serving(server: FakeArchiveServer) -> Iterator[FakeArchiveServer]:
    """Serve ``server`` on a free port of 127.0.0.1 while the block runs."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status, headers, body = server.answer(self.path, self.headers.get("Range"))
            cut = server.cuts.pop(self.path, None) if status in (200, 206) else None
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if cut is not None:  # part of the body, then the connection dropped
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
