"""The one exception tree of algotrade.

Every error algotrade raises on purpose derives from :class:`AlgotradeError`::

    AlgotradeError
    ├── ConfigurationError        a setting or option has a malformed or forbidden value
    ├── InvalidInputError         a frame, file line or stream entry cannot be understood
    ├── StoreError                the event store failed
    │   └── ConcurrencyError      another writer appended at the same stream version
    ├── MessagingError            a message did not get through: the signal bus (Redis)
    │   │                         failed to publish, deliver or ack
    │   └── ExchangeError         the exchange (Binance's REST API or its streams) did not
    │                             answer, or answered what cannot be used
    └── RecorderError             a recording of raw frames could not be written

Adapters translate driver errors into these with ``raise ... from e``, each in one place
(``adapters/mongo/retries.py``, ``adapters/sqlite.py``'s ``_translated``,
``adapters/redis/streams.py``'s ``translated``, ``adapters/binance/answers.py``), so that callers
never need to know which database or client library is underneath.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar


class AlgotradeError(Exception):
    """Root of every error algotrade raises on purpose."""


class ConfigurationError(AlgotradeError):
    """A setting or command-line option has a malformed or forbidden value."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class InvalidInputError(AlgotradeError):
    """A piece of external data (frame, file line, stream entry) cannot be understood."""


class StoreError(AlgotradeError):
    """The event store failed to read or write."""


class ConcurrencyError(StoreError):
    """A different event already sits at the stream version an append expected to fill."""

    def __init__(self, stream: str, version: int) -> None:
        super().__init__(f"stream {stream!r} already has a different event at version {version}")
        self.stream = stream
        self.version = version


class MessagingError(AlgotradeError):
    """A message did not get through: the signal bus failed to publish, deliver or
    acknowledge (and, as :class:`ExchangeError`, the exchange failed to answer)."""


class ExchangeError(MessagingError):
    """The exchange did not answer (an outage, a timeout, a rate limit past its retries) or
    answered what cannot be used. A :class:`MessagingError`: whoever retries a message that
    did not get through retries this too."""


class RecorderError(AlgotradeError):
    """A recording of raw frames could not be written (a full disk, a closed file): the
    feed stops, since every frame from then on would be missing from the recording."""


E = TypeVar("E", bound=BaseException)


def leaves(error: BaseException) -> Iterator[BaseException]:
    """Yield the exceptions inside ``error``: itself, or every one an exception group holds
    (task groups wrap what their tasks raise, beside the cancellations it caused)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


def find_error(error: BaseException, kind: type[E]) -> E | None:
    """Return the first ``kind`` among the :func:`leaves` of ``error``, if any."""
    return next((e for e in leaves(error) if isinstance(e, kind)), None)
