"""Credentials apart from URLs, and latency metrics that read this machine's clocks."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest
from pymongo.uri_parser import parse_uri
from redis.connection import parse_url

from algotrade.adapters.memory import InMemoryEventStore
from algotrade.apps.metrics import ServiceMetrics
from algotrade.apps.settings import MONGO_CREDENTIALS, REDIS_CREDENTIALS, with_credentials
from algotrade.apps.timing import TimedStore
from algotrade.domain.errors import ConfigurationError
from tests.support.builders import diff

PASSWORD = "p@ss:/w%rd+ x"


def test_credentials_go_percent_encoded_into_the_url() -> None:
    """A password with URL syntax in it reaches pymongo and redis-py exactly as given."""
    env = {"ALGOTRADE_MONGO_USERNAME": "algo", "ALGOTRADE_MONGO_PASSWORD": PASSWORD}
    url = with_credentials(
        "mongodb://mongo:27017/btc_data?authSource=admin", MONGO_CREDENTIALS, env
    )
    parsed = parse_uri(url)
    assert (parsed["username"], parsed["password"]) == ("algo", PASSWORD)
    assert parsed["nodelist"] == [("mongo", 27017)]
    redis_url = with_credentials(
        "redis://redis:6379/0", REDIS_CREDENTIALS, {"ALGOTRADE_REDIS_PASSWORD": PASSWORD}
    )
    parsed_redis = parse_url(redis_url)  # type: ignore[no-untyped-call]  # redis-py: untyped
    assert parsed_redis == {"password": PASSWORD, "host": "redis", "port": 6379, "db": 0}


def test_urls_without_credentials_variables_are_left_alone() -> None:
    """No variable set, or a store that is not MongoDB (a SQLite path): the URL unchanged."""
    assert with_credentials("mongodb://m:27017/x", MONGO_CREDENTIALS, {}) == "mongodb://m:27017/x"
    env = {"ALGOTRADE_MONGO_PASSWORD": "pw"}
    assert with_credentials("algotrade.db", MONGO_CREDENTIALS, env) == "algotrade.db"


def test_credentials_in_two_places_are_refused_naming_the_variable() -> None:
    """A URL holding a password while the variable is set too is a configuration error."""
    with pytest.raises(ConfigurationError) as raised:
        with_credentials(
            "mongodb://u:p@m:27017/x", MONGO_CREDENTIALS, {"ALGOTRADE_MONGO_PASSWORD": "pw"}
        )
    assert raised.value.name == "ALGOTRADE_MONGO_PASSWORD"


def test_a_latency_from_replayed_data_is_counted_not_observed() -> None:
    """An end-to-end latency hours off the local clock (a replay, the synthetic market) is
    counted as unmeasured; one of 12 ms lands in the 25 ms bucket."""
    metrics = ServiceMetrics("trader", [], ["exchange_to_acked_seconds"])
    metrics.observe_data_latency("exchange_to_acked_seconds", 4 * 365 * 86400.0)
    metrics.observe_data_latency("exchange_to_acked_seconds", 0.012)
    text = metrics.render().decode()
    assert 'algotrade_unmeasured_latencies_total{histogram="exchange_to_acked_seconds"} 1.0' in text
    assert 'algotrade_exchange_to_acked_seconds_bucket{le="0.01"} 0.0' in text
    assert 'algotrade_exchange_to_acked_seconds_bucket{le="0.025"} 1.0' in text
    assert "algotrade_exchange_to_acked_seconds_count 1.0" in text


def test_the_store_operations_are_timed_by_op() -> None:
    """A TimedStore records each append and read in store_operation_seconds{op}."""
    metrics = ServiceMetrics("collector", [], [], ["store_operation_seconds"])
    store = TimedStore(InMemoryEventStore(), metrics.operation_observer("store_operation_seconds"))

    async def main() -> None:
        await store.append([replace(diff(1, 2), version=1), replace(diff(3, 4), version=2)])
        assert len(await store.read_all(0)) == 2
        assert await store.head() == 2

    anyio.run(main)
    text = metrics.render().decode()
    for op in ("append", "read_all", "head"):
        assert f'algotrade_store_operation_seconds_count{{op="{op}"}} 1.0' in text, op
    assert 'op="wait"' not in text
