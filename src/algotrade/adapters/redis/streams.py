"""Signals over a Redis stream: a publisher, and a consumer-group consumer for traders.

Delivery is at least once. A consumer reads new entries with ``XREADGROUP``, and the
trader acknowledges them (``XACK``, in batches) only after their orders are stored.
Entries left pending by a dead or failing consumer are taken over with ``XAUTOCLAIM``
once idle for ``claim_idle`` seconds; an entry delivered more than ``max_deliveries``
times, or one that cannot be read (missing fields, bad numbers, unknown side or schema),
is copied to the dead-letter stream with the reason and acknowledged, so it never blocks
the group and is never lost.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from algotrade.adapters.redis.codec import signal_from_fields, signal_to_fields
from algotrade.adapters.redis.names import DEAD_LETTER_STREAM, SIGNAL_GROUP, SIGNAL_STREAM
from algotrade.domain.errors import InvalidInputError, MessagingError
from algotrade.domain.events import SignalEmitted
from algotrade.domain.ports import Delivery

Fields = dict[Any, Any]


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn a Redis driver error inside the block into a :class:`MessagingError` saying what
    could not be done (``"cannot read 'trade_signals_stream': ..."``): the Redis adapter's
    one mapping of driver errors."""
    try:
        yield
    except redis_errors.RedisError as e:
        raise MessagingError(f"cannot {what}: {e}") from e


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def default_consumer_name() -> str:
    """Return a consumer name unique per process: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


OperationObserver = Callable[[str, float], None]
"""Records how long one Redis operation took: ``("publish", 0.0012)``."""


def _unobserved(operation: str, seconds: float) -> None:
    """Record nothing (the default)."""


class RedisSignalPublisher:
    """Appends signals to a stream trimmed to about ``maxlen`` entries.

    ``observe_operation`` sees how long each ``publish`` took (the services' metrics).
    """

    def __init__(
        self, client: Redis, *, stream: str = SIGNAL_STREAM, maxlen: int = 100_000
    ) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen
        self.published = 0
        self.observe_operation: OperationObserver = _unobserved

    async def publish(self, signals: Sequence[SignalEmitted]) -> None:
        """Append every signal, in order, in one round trip."""
        if not signals:
            return
        started = time.perf_counter()
        with translated(f"publish to {self.stream!r}"):
            async with self.client.pipeline(transaction=False) as pipe:
                for signal in signals:
                    pipe.xadd(
                        self.stream, signal_to_fields(signal), maxlen=self.maxlen,  # type: ignore[arg-type]
                        approximate=True,
                    )  # fmt: skip
                await pipe.execute()
        self.observe_operation("publish", time.perf_counter() - started)
        self.published += len(signals)


class RedisSignalConsumer:
    """One member of a consumer group on the signal stream.

    ``observe_operation`` sees how long each ``ack`` took; a ``receive`` blocks until
    entries arrive or its timeout passes, so its time is not the operation's.
    """

    def __init__(
        self,
        client: Redis,
        *,
        stream: str = SIGNAL_STREAM,
        group: str = SIGNAL_GROUP,
        consumer: str | None = None,
        dead_letters: str = DEAD_LETTER_STREAM,
        claim_idle: float = 30.0,
        max_deliveries: int = 5,
        claim_every: float | None = None,
        dead_letter_maxlen: int = 100_000,
    ) -> None:
        self.client = client
        # A decoding client hands entries over as text: nothing to check or convert.
        self._text = bool(client.connection_pool.connection_kwargs.get("decode_responses"))
        self.stream = stream
        self.group = group
        self.consumer = consumer or default_consumer_name()
        self.dead_letters = dead_letters
        self.claim_idle = claim_idle
        self.max_deliveries = max_deliveries
        self.dead_letter_maxlen = dead_letter_maxlen  # about; the oldest trimmed first
        self.claim_every = claim_idle / 2 if claim_every is None else claim_every
        self._group_ready = False
        self._claim_cursor = "0-0"
        self._last_claim = 0.0
        self.dead_lettered = 0
        self.reclaimed = 0
        self.observe_operation: OperationObserver = _unobserved

    async def ensure_group(self) -> None:
        """Create the group (and the stream) from the first entry, unless it exists."""
        with translated(f"create group {self.group!r}"):
            try:
                await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except redis_errors.ResponseError as e:
                if "BUSYGROUP" not in str(e):  # not "it exists already"
                    raise
        self._group_ready = True

    async def receive(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        """Return up to ``max_count`` deliveries: reclaimed ones first, then new ones."""
        with translated(f"read {self.stream!r}"):
            try:
                if not self._group_ready:
                    await self.ensure_group()
                now = time.monotonic()
                if now - self._last_claim >= self.claim_every:
                    self._last_claim = now
                    reclaimed = await self._reclaim(max_count)
                    if reclaimed:
                        return reclaimed
                response: Any = await self.client.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream: ">"},
                    count=max_count,
                    block=max(1, int(timeout * 1000)),
                )
            except redis_errors.ResponseError as e:
                if "NOGROUP" in str(e):  # the stream was deleted: recreate the group next time
                    self._group_ready = False
                raise
        deliveries: list[Delivery] = []
        for _, entries in response or ():
            for entry_id, fields in entries:
                delivery = await self._decode(entry_id, fields, attempt=1)
                if delivery is not None:
                    deliveries.append(delivery)
        return deliveries

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge a batch of deliveries in one call."""
        if not deliveries:
            return
        started = time.perf_counter()
        with translated(f"acknowledge on {self.stream!r}"):
            await self.client.xack(self.stream, self.group, *(d.token for d in deliveries))
        self.observe_operation("ack", time.perf_counter() - started)

    async def backlog(self, bound: int = 10_000) -> tuple[int, int]:
        """Return the group's lag (entries not yet delivered, counted up to ``bound``) and
        its pending entries (delivered, not acknowledged).

        Redis 7 reports the lag itself; on older servers the entries after the group's
        last delivered id are counted. Before the group exists, every entry is lag.
        """
        with translated(f"inspect {self.stream!r}"):
            try:
                groups: Any = await self.client.xinfo_groups(self.stream)
            except redis_errors.ResponseError as e:
                if "no such key" in str(e).lower():  # no stream yet: nothing behind
                    return 0, 0
                raise
            mine = next((g for g in groups if _text(g["name"]) == self.group), None)
            if mine is None:
                return min(int(await self.client.xlen(self.stream)), bound), 0
            pending = int(mine["pending"])
            lag = mine.get("lag")
            if lag is None:
                after = "(" + _text(mine["last-delivered-id"])
                lag = len(await self.client.xrange(self.stream, min=after, count=bound) or ())
            return int(lag), pending

    async def _decode(self, entry_id: Any, fields: Fields, *, attempt: int) -> Delivery | None:
        token = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        try:
            signal = signal_from_fields(fields, text=self._text)
        except InvalidInputError as e:
            await self._dead_letter(token, fields, f"malformed entry: {e}", attempt)
            return None
        return Delivery(token, signal, attempt)

    async def _reclaim(self, max_count: int) -> list[Delivery]:
        """Take over entries idle too long; dead-letter those delivered too often."""
        result = await self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=int(self.claim_idle * 1000),
            start_id=self._claim_cursor,
            count=max_count,
        )
        cursor, claimed = result[0], result[1]
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        claimed = [(entry_id, fields) for entry_id, fields in claimed if fields is not None]
        if not claimed:
            return []
        counts = await self._delivery_counts([entry_id for entry_id, _ in claimed])
        deliveries: list[Delivery] = []
        for entry_id, fields in claimed:
            token = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            attempt = counts.get(token, 1)
            if attempt > self.max_deliveries:
                reason = f"delivered {attempt} times without being acknowledged"
                await self._dead_letter(token, fields, reason, attempt)
                continue
            delivery = await self._decode(entry_id, fields, attempt=attempt)
            if delivery is not None:
                self.reclaimed += 1
                deliveries.append(delivery)
        return deliveries

    async def _delivery_counts(self, entry_ids: list[Any]) -> dict[str, int]:
        pending = await self.client.xpending_range(
            self.stream, self.group, min=entry_ids[0], max=entry_ids[-1], count=len(entry_ids) * 4
        )
        out = {}
        for item in pending:
            message_id = item["message_id"]
            token = message_id.decode() if isinstance(message_id, bytes) else str(message_id)
            out[token] = int(item["times_delivered"])
        return out

    async def _dead_letter(self, token: str, fields: Fields, reason: str, attempt: int) -> None:
        """Copy an entry to the dead-letter stream with why, then acknowledge it."""
        entry = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in fields.items()}
        entry.update(
            dead_reason=reason,
            dead_entry_id=token,
            dead_stream=self.stream,
            dead_deliveries=str(attempt),
        )
        with translated(f"dead-letter an entry of {self.stream!r}"):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    self.dead_letters, entry,  # type: ignore[arg-type]  # invariant dict stub
                    maxlen=self.dead_letter_maxlen, approximate=True,
                )  # fmt: skip
                pipe.xack(self.stream, self.group, token)
                await pipe.execute()
        self.dead_lettered += 1
