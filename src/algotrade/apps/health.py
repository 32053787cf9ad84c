"""Health that means data flows: dependency pings and data-flow checks, probed in the
background, read by the HTTP endpoints without I/O.

Three answers, each 200 when good and 503 when not, naming what is wrong:

- ``livez``: the process's event loop turns (the monitor's ticker is on time). No I/O.
- ``healthcheck``: the seed's contract: every dependency answers (MongoDB, Redis, the
  store) and the process is live.
- ``readyz``: ``healthcheck`` and data flows: the service's own flow checks (fresh market
  data and synchronised books; a processor not behind; a trader's lag and pending entries
  under their bounds).

A probe is an async function returning a short detail when fine; it raises
:class:`UnhealthyError` (or anything else) to fail, and is given ``timeout`` seconds to answer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.abc

from algotrade.apps.logs import log, warn

Probe = Callable[[], Awaitable[str]]
Kind = Literal["dependency", "flow"]


class UnhealthyError(Exception):
    """A probe's verdict: what is wrong, in words an operator can act on."""


@dataclass(frozen=True, slots=True)
class Check:
    """One named probe: a ``dependency`` (MongoDB, Redis) or a ``flow`` check."""

    name: str
    kind: Kind
    probe: Probe


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one probe."""

    ok: bool
    detail: str
    kind: Kind

    def view(self) -> dict[str, str]:
        """Return the JSON object of this result."""
        return {"status": "UP" if self.ok else "DOWN", "detail": self.detail}


@dataclass
class Monitor:
    """Probes a service's checks every ``interval`` seconds and keeps the latest answers."""

    service: str
    checks: Sequence[Check]
    interval: float = 2.0
    timeout: float = 2.0
    max_loop_lag: float = 5.0
    results: dict[str, Result] = field(default_factory=dict)
    stopping: bool = False
    _tick: float = field(default_factory=time.monotonic)
    _lag: float = 0.0
    _probed: float = 0.0

    _tasks: anyio.abc.TaskGroup | None = None
    _inflight: dict[str, anyio.Event] = field(default_factory=dict)
    _answers: dict[str, Result] = field(default_factory=dict)

    async def run(self) -> None:
        """Probe for ever (cancel to stop); a ticker measures the event loop's lag."""
        async with self.probing() as tg:
            tg.start_soon(self._ticker)
            while True:
                await self.probe()
                await anyio.sleep(self.interval)

    @contextlib.asynccontextmanager
    async def probing(self) -> AsyncIterator[anyio.abc.TaskGroup]:
        """Own the task group probes run in (:meth:`run` enters it; tests may too)."""
        async with anyio.create_task_group() as tg:
            self._tasks = tg
            try:
                yield tg
            finally:
                self._tasks = None
                tg.cancel_scope.cancel()

    async def _ticker(self, period: float = 0.25) -> None:
        while True:
            before = time.monotonic()
            await anyio.sleep(period)
            self._tick = time.monotonic()
            self._lag = max(0.0, self._tick - before - period)

    async def _answer_of(self, check: Check, done: anyio.Event) -> None:
        try:
            detail = await check.probe()
            self._answers[check.name] = Result(True, detail, check.kind)
        except Exception as e:
            self._answers[check.name] = Result(False, str(e) or type(e).__name__, check.kind)
        finally:
            del self._inflight[check.name]
            done.set()

    async def probe(self) -> None:
        """Run every check now, concurrently; report those not done within ``timeout``.

        A late probe is never cancelled: cancelling a database driver in the middle of an
        operation can leave its connection pool broken (seen with pymongo's async client).
        It goes on in the background, is reported as not answering, and is not started
        again until it ends.
        """
        if self._tasks is None:
            raise RuntimeError("probe() needs the monitor's task group: use run() or probing()")
        waiting: dict[str, anyio.Event] = {}
        for check in self.checks:
            event = self._inflight.get(check.name)
            if event is None:
                event = self._inflight[check.name] = anyio.Event()
                self._tasks.start_soon(self._answer_of, check, event)
            waiting[check.name] = event
        with anyio.move_on_after(self.timeout):
            for event in waiting.values():
                await event.wait()
        results: dict[str, Result] = {}
        for check in self.checks:
            if waiting[check.name].is_set():
                results[check.name] = self._answers[check.name]
            else:
                results[check.name] = Result(
                    False, f"no answer within {self.timeout:g}s", check.kind
                )
        previous = self.results
        self.results = {c.name: results[c.name] for c in self.checks}
        self._probed = time.monotonic()
        for name, result in self.results.items():
            before = previous.get(name)
            if before is None:
                if not result.ok:
                    log(self.service, "check not passing yet", check=name, detail=result.detail)
            elif before.ok and not result.ok:
                warn(self.service, "check failing", check=name, detail=result.detail)
            elif result.ok and not before.ok:
                log(self.service, "check recovered", check=name, detail=result.detail)

    def _live(self) -> Result:
        now = time.monotonic()
        since = now - self._tick
        if since > self.max_loop_lag or self._lag > self.max_loop_lag:
            return Result(
                False, f"event loop stalled for {max(since, self._lag):.1f}s", "dependency"
            )
        return Result(True, f"event loop lag {self._lag * 1000:.0f}ms", "dependency")

    def livez(self) -> tuple[int, dict[str, Any]]:
        """Return the liveness answer (no I/O)."""
        return self._answer({"loop": self._live()})

    def healthcheck(self) -> tuple[int, dict[str, Any]]:
        """Return the seed's health answer: dependencies and liveness."""
        return self._answer(self._selected(("dependency",)))

    def readyz(self) -> tuple[int, dict[str, Any]]:
        """Return the readiness answer: dependencies, liveness and data flow."""
        return self._answer(self._selected(("dependency", "flow")))

    def _selected(self, kinds: tuple[Kind, ...]) -> dict[str, Result]:
        chosen = {"loop": self._live()}
        if not self.results:
            chosen["startup"] = Result(False, "first probe not finished", "dependency")
        elif time.monotonic() - self._probed > self.interval + 2 * self.timeout + 5:
            chosen["probes"] = Result(False, "probes stopped answering", "dependency")
        chosen.update((k, r) for k, r in self.results.items() if r.kind in kinds)
        if self.stopping and "flow" in kinds:
            chosen["shutdown"] = Result(False, "stopping: draining in-flight work", "flow")
        return chosen

    def _answer(self, results: dict[str, Result]) -> tuple[int, dict[str, Any]]:
        ok = all(r.ok for r in results.values())
        body = {
            "status": "UP" if ok else "DOWN",
            "service": self.service,
            "checks": {name: r.view() for name, r in results.items()},
        }
        return (200 if ok else 503), body
