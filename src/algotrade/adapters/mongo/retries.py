"""What a MongoDB failure means for the store: retried, planned again, or a StoreError.

This module is the MongoDB adapter's one mapping of driver errors: :func:`store_error`
turns a pymongo error into the domain's :class:`~algotrade.domain.errors.StoreError`
(a duplicate key into :class:`~algotrade.domain.errors.ConcurrencyError` when it names a
stream version), and :func:`retrying` retries the transient ones with capped exponential
backoff and jitter.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from algotrade.domain.errors import StoreError

T = TypeVar("T")
OnRetry = Callable[[str, str, float], None]
"""Told of each retry: ``(what, error, pause in seconds)``."""

#: Server error codes that mean "try again" (primary stepped down, shutting down, timeouts).
RETRYABLE_CODES = frozenset({6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})


@dataclass(slots=True)
class MongoStats:
    """What the store did, for metrics and tests."""

    retries: int = 0
    duplicates: int = 0
    conflicts_retried: int = 0
    ranges_aborted: int = 0
    ranges_declared_dead: int = 0
    commits_pruned: int = 0
    malformed: int = 0


class RetryError(Exception):
    """The append met another writer's work (or a stale cache) and must be planned again."""


def transient(error: PyMongoError) -> bool:
    """Return whether a driver error is worth retrying: the server away, a step-down, a
    timeout, or an error the server labels retryable."""
    if isinstance(error, ConnectionFailure):  # also AutoReconnect, timeouts, no server
        return True
    if isinstance(error, OperationFailure) and error.code in RETRYABLE_CODES:
        return True
    return error.has_error_label("RetryableWriteError")


def store_error(what: str, error: PyMongoError) -> StoreError:
    """Return the domain's error for a driver error that retrying will not cure."""
    return StoreError(f"MongoDB {what} failed: {error}")


async def retrying(
    what: str,
    op: Callable[[], Awaitable[T]],
    *,
    give_up_after: float | None,
    max_delay: float,
    on_retry: OnRetry | None,
    stats: MongoStats,
) -> T:
    """Run ``op`` until it succeeds, pausing (with jitter) between transient failures.

    Each attempt is shielded from cancellation: a caller's timeout or a shutdown takes
    effect once the attempt ends (pymongo bounds it: server selection, socket timeout)
    or in the pause. Cancelled inside server selection, pymongo's asyncio driver can
    lose its topology lock under Python 3.11 (``RuntimeError: cannot wait on
    un-acquired lock`` in every task selecting a server afterwards, which ended a
    processor when MongoDB restarted while its reads waited with a timeout).
    """
    delay = 0.05
    started = time.monotonic()
    while True:
        try:
            with anyio.CancelScope(shield=True):
                return await op()
        except PyMongoError as e:
            if not transient(e):
                raise StoreError(f"MongoDB {what} failed: {e}") from e
            waited = time.monotonic() - started
            if give_up_after is not None and waited >= give_up_after:
                raise StoreError(f"MongoDB unreachable for {waited:.0f}s during {what}: {e}") from e
            stats.retries += 1
            pause = delay * (0.5 + random.random() / 2)  # jitter: writers do not stampede
            delay = min(max_delay, delay * 2)
            if on_retry is not None:
                on_retry(what, str(e), pause)
            await anyio.sleep(pause)
