"""What a connection adapter tells the service's log: opened, lost, failed, retried.

An adapter that keeps a connection up for ever (the Binance market feed, the user data
stream) does not log; it hands a :class:`Notice` to the ``notify`` callback it was given,
and the service logs it with its own context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Notice:
    """A connection opened, lost or failed, or a request that failed: for the log."""

    message: str
    problem: bool
    """True for a failure (it is retried): a warning, not news."""
    fields: Mapping[str, object]


Notify = Callable[[Notice], None]


def ignore(told: Notice) -> None:
    """Drop a notice: an adapter's default when nobody logs (tests, tools)."""


def describe(error: BaseException) -> str:
    """Return ``Type: message`` of a failure, looking inside a group of one (httpx-ws)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
