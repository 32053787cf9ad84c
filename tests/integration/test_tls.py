"""TLS URLs: `rediss://` and MongoDB `tls=true` work end to end, through a TLS-terminating
proxy in front of the test servers (the pip-installed Redis has no TLS of its own), with a
throw-away certificate authority (trustme)."""

from __future__ import annotations

import contextlib
import gc
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest
import trustme
from anyio.streams.tls import TLSListener

from algotrade.adapters.mongo import MongoEventStore
from algotrade.apps.settings import RedisSettings
from algotrade.apps.wiring import redis_client, redis_consumer, redis_publisher
from algotrade.domain.events import SignalEmitted
from algotrade.domain.streams import bar_stream
from algotrade.domain.values import Side
from tests.support.servers import free_port

pytestmark = [
    pytest.mark.anyio,
    # sockets of the proxy's cancelled relays and of a refused handshake are left to the
    # garbage collector (collected at the end of each proxy, inside the test)
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@asynccontextmanager
async def tls_proxy(upstream: str, ca: trustme.CA) -> AsyncIterator[int]:
    """Accept TLS on a free port and relay the plain bytes to ``host:port``."""
    host, port = upstream.rsplit(":", 1)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    bound = free_port()
    listener = TLSListener(
        await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=bound), context
    )

    async def relay(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):  # the TLS side may be gone mid-close
                await sink.aclose()

    async def serve(client: anyio.abc.ByteStream) -> None:
        with contextlib.suppress(Exception):  # one connection's end never stops the proxy
            async with (
                await anyio.connect_tcp(host, int(port)) as server,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(relay, client, server)
                tg.start_soon(relay, server, client)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield bound
        tg.cancel_scope.cancel()
    gc.collect()


@pytest.fixture
def ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


async def test_signals_over_rediss(redis_url: str, ca: tuple[trustme.CA, Path]) -> None:
    """Signals travel over rediss:// (TLS) to the consumer group, with the URL's CA file."""
    authority, ca_file = ca
    upstream = urlsplit(redis_url)
    async with tls_proxy(f"{upstream.hostname}:{upstream.port}", authority) as port:
        url = f"rediss://127.0.0.1:{port}{upstream.path or '/0'}?ssl_ca_certs={ca_file}"
        settings = RedisSettings(url, stream="tls-signals", group="tls-group")
        client = redis_client(settings)
        try:
            signal = SignalEmitted(
                stream="signals-BTCUSDT-1m-x", version=1, exchange_ts=1, receive_ts=1,
                signal_id="5d2c8f1e-7c3a-5d7e-9f00-000000000001", symbol="BTCUSDT",
                interval="1m", side=Side.BUY, price=Decimal("100.5"), short_sma=1.0,
                long_sma=0.5, bar_time=0, strategy="x", params=(("short", 1),),
            )  # fmt: skip
            await redis_publisher(settings, client).publish([signal])
            consumer = redis_consumer(settings, client)
            deliveries = await consumer.receive(10, 2.0)
            assert [d.signal for d in deliveries] == [signal]
            await consumer.ack(deliveries)
        finally:
            await client.aclose()


async def test_a_plain_connection_to_a_tls_port_fails_clearly(
    redis_url: str, ca: tuple[trustme.CA, Path]
) -> None:
    """A rediss:// URL without the CA is refused by certificate verification."""
    authority, _ = ca
    upstream = urlsplit(redis_url)
    async with tls_proxy(f"{upstream.hostname}:{upstream.port}", authority) as port:
        client = redis_client(RedisSettings(f"rediss://127.0.0.1:{port}/0"))
        try:
            with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
                await client.ping()
        finally:
            await client.aclose()
            gc.collect()  # here, where the warning is silenced, not in the next test


async def test_event_store_over_mongodb_tls(mongo_url: str, ca: tuple[trustme.CA, Path]) -> None:
    """The MongoDB store appends and reads over TLS with the CA file given in the URL."""
    authority, ca_file = ca
    upstream = urlsplit(mongo_url)
    if "," in (upstream.netloc or ""):
        pytest.skip("a replica set URL: the proxy relays one server")
    async with tls_proxy(f"{upstream.hostname}:{upstream.port}", authority) as port:
        url = (
            f"mongodb://127.0.0.1:{port}/btc_tls?tls=true&tlsCAFile={ca_file}&directConnection=true"
        )
        store = MongoEventStore(url, give_up_after=30.0)
        try:
            await store.ping()
            stream = bar_stream("BTCUSDT", "1m")
            assert await store.read_stream(stream) == []
        finally:
            await store.close()
