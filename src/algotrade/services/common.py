"""What the use cases share: the latency observer and the pacing of replayed market data."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence

import anyio

from algotrade.domain.events import MarketEvent
from algotrade.domain.ports import Clock

Observer = Callable[[str, float], None]
"""Records one latency in seconds: ``observe("frame_to_stored_seconds", 0.012)``."""


def ignore(name: str, seconds: float) -> None:
    """An observer that records nothing (library use, tests)."""


async def paced(
    batches: AsyncIterator[Sequence[MarketEvent]], speed: float, clock: Clock
) -> AsyncIterator[Sequence[MarketEvent]]:
    """Release events no faster than ``speed`` times their receive-time pace."""
    if math.isinf(speed):
        async for batch in batches:
            yield batch
        return
    origin: tuple[int, float] | None = None
    async for batch in batches:
        ready: list[MarketEvent] = []
        for event in batch:
            if origin is None:
                origin = (event.receive_ts, clock.monotonic())
            due = origin[1] + (event.receive_ts - origin[0]) / 1e9 / speed
            wait = due - clock.monotonic()
            if wait > 0.005:
                if ready:
                    yield ready
                    ready = []
                await anyio.sleep(wait)
            ready.append(event)
        if ready:
            yield ready
