"""Waiting for new events by polling a store's head, for stores without notifications."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


async def wait_for_head(
    head: Callable[[], Awaitable[int]], after: int, timeout: float, interval: float
) -> bool:
    """Poll ``head()`` every ``interval`` seconds until it passes ``after`` or ``timeout`` ends."""
    with anyio.move_on_after(timeout):
        while await head() <= after:
            await anyio.sleep(interval)
        return True
    return False
