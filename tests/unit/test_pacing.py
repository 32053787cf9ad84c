"""Pacing: market time replayed at a chosen multiple of real time, or unpaced."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from algotrade.adapters.memory import SystemClock
from algotrade.apps.common import parse_duration, parse_speed
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import MarketEvent
from algotrade.services.common import paced
from tests.support.builders import diff

pytestmark = pytest.mark.anyio
SECOND = 1_000_000_000


async def one_second_of_events() -> AsyncIterator[Sequence[MarketEvent]]:
    """Yield 11 diffs spread over one second of receive time, in one batch."""
    yield [diff(i, i, ts=i * SECOND // 10) for i in range(11)]


async def drain(speed: float) -> tuple[int, float]:
    """Return how many events came out and how long it took."""
    start = time.monotonic()
    count = 0
    async for batch in paced(one_second_of_events(), speed, SystemClock()):
        count += len(batch)
    return count, time.monotonic() - start


async def test_speed_scales_real_time() -> None:
    """At speed 4, one second of market time takes about a quarter second."""
    count, elapsed = await drain(4.0)
    assert count == 11
    assert 0.2 <= elapsed < 1.0


async def test_max_speed_does_not_wait() -> None:
    """Unpaced, the same second of market time passes at once."""
    count, elapsed = await drain(math.inf)
    assert count == 11
    assert elapsed < 0.2


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600)])
def test_durations(text: str, seconds: float) -> None:
    """Durations take seconds or a unit."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5s", "0", "5y"])
def test_bad_durations(text: str) -> None:
    """Anything else names the option."""
    with pytest.raises(ConfigurationError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "speed"), [("max", math.inf), ("1", 1.0), ("2.5", 2.5)])
def test_speeds(text: str, speed: float) -> None:
    """Speed is a positive factor or max."""
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["0", "-1", "fast", "inf", "nan"])
def test_bad_speeds(text: str) -> None:
    """Zero, negative, infinite or non-numeric speeds are refused."""
    with pytest.raises(ConfigurationError, match="speed"):
        parse_speed(text)
