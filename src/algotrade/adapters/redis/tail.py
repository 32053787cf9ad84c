"""Following a Redis stream live (``algotrade signals tail``): every entry, in order, through
outages of the server, from the newest one or from the start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from algotrade.adapters.notices import Notice, Notify, ignore
from algotrade.domain.errors import MessagingError


async def tail_stream(
    client: Redis, stream: str, *, from_start: bool = False, notify: Notify = ignore
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Yield ``(entry id, fields)`` of every entry added to ``stream`` (and of the older
    ones with ``from_start``), for ever; an outage after the first answer is told to
    ``notify`` and retried with a growing wait.

    Raises:
        MessagingError: Redis never answered.
    """
    # From the newest entry's id, once Redis answers; not "$", which read again after a
    # timeout or an outage would skip what was added in between.
    last: str | None = "0-0" if from_start else None
    backoff, answered = 0.1, False  # a server never reached is an error, an outage not
    while True:
        try:
            if last is None:
                newest: Any = await client.xrevrange(stream, count=1)
                last = str(newest[0][0]) if newest else "0-0"
            response: Any = await client.xread({stream: last}, count=100, block=1000)
        except redis_errors.RedisError as e:
            if not answered:
                raise MessagingError(f"cannot read {stream!r}: {e}") from e
            notify(Notice("signal stream unavailable, retrying", True,
                          {"stream": stream, "error": e, "retry_in": backoff}))  # fmt: skip
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        backoff, answered = 0.1, True
        for _, entries in response or ():
            for entry_id, fields in entries:
                last = str(entry_id)
                yield last, {str(k): str(v) for k, v in fields.items()}
