"""A service as a process: its HTTP side, its progress line, its signals and its end.

:func:`run_app` takes what a bootstrap built (:class:`~algotrade.apps.bootstrap.App`),
serves ``/healthcheck``, ``/livez``, ``/readyz`` and ``/metrics`` while the work runs (see
:mod:`algotrade.apps.http`), starts Pyroscope when ``PYROSCOPE_SERVER_ADDRESS`` is set, and
stops on SIGTERM or SIGINT: input stops, in-flight work is finished, stored and
acknowledged, buffers are flushed, and the command returns its summary (exit status 0).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from algotrade.apps.bootstrap import App, Work
from algotrade.apps.common import Progress, stop_after, stop_on_signals
from algotrade.apps.health import Check, Monitor
from algotrade.apps.http import create_app, listen, serve_http
from algotrade.apps.logs import log, warn
from algotrade.apps.metrics import Figure, Figures, ServiceMetrics
from algotrade.apps.settings import ServiceSettings
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.ports import Clock


@dataclass
class Observability:
    """A service's HTTP side: its checks (probed by the monitor) and its metrics."""

    monitor: Monitor
    metrics: ServiceMetrics


def observability(
    service: str,
    settings: ServiceSettings,
    checks: Sequence[Check],
    figures: Sequence[Figures],
    latencies: Iterable[str],
    operations: Iterable[str] = ("store_operation_seconds",),
) -> Observability:
    """Build a service's monitor and metrics; each check's state is a metric too."""
    monitor = Monitor(service, checks, interval=settings.http.probe_interval)

    def check_figures() -> list[Figure]:
        return [
            Figure(
                "check_up",
                "gauge",
                "1 when the health check passes, 0 when it fails (kind: dependency or flow).",
                labels=("check", "kind"),
                values=[((name, r.kind), float(r.ok)) for name, r in monitor.results.items()],
            )
        ]

    metrics = ServiceMetrics(service, [*figures, check_figures], latencies, operations)
    return Observability(monitor, metrics)


def start_profiling(service: str) -> bool:
    """Send continuous profiles to Pyroscope when ``PYROSCOPE_SERVER_ADDRESS`` is set.

    Returns whether profiling started. The profiles are tagged with the service's name.
    """
    address = os.environ.get("PYROSCOPE_SERVER_ADDRESS", "").strip()
    if not address:
        return False
    if not address.startswith(("http://", "https://")):
        raise ConfigurationError(
            "PYROSCOPE_SERVER_ADDRESS", f"{address!r} is not an http:// or https:// URL"
        )
    try:
        import pyroscope  # type: ignore[import-untyped]  # no stubs; an optional extra
    except ImportError:
        raise ConfigurationError(
            "PYROSCOPE_SERVER_ADDRESS",
            "is set, but pyroscope-io is not installed: pip install 'algotrade[profiling]'",
        ) from None
    pyroscope.configure(
        application_name=os.environ.get("PYROSCOPE_APPLICATION_NAME", f"algotrade.{service}"),
        server_address=address,
        basic_auth_username=os.environ.get("PYROSCOPE_BASIC_AUTH_USER", ""),
        basic_auth_password=os.environ.get("PYROSCOPE_BASIC_AUTH_PASSWORD", ""),
        tags={"service": service},
    )
    log(service, "profiling to pyroscope", server=address)
    return True


async def serve(
    service: str,
    work: Work,
    render: Callable[[float], str],
    clock: Clock,
    *,
    settings: ServiceSettings | None = None,
    observed: Observability | None = None,
) -> None:
    """Run one service's work: signals, progress, health and metrics, an optional limit.

    On SIGTERM or SIGINT, ``/readyz`` turns 503 (``shutdown``) while the work drains; the
    HTTP side stops last.
    """
    stop = anyio.Event()
    http_stop = anyio.Event()
    progress = Progress(render, clock)
    sock = None
    if observed is not None and settings is not None:
        sock = listen(settings.http.host, settings.http.port)
        start_profiling(service)

    def on_signal(name: str) -> None:
        log(service, "stopping: finishing in-flight work", signal=name)
        if observed is not None:
            observed.monitor.stopping = True

    try:
        # The HTTP side runs outside the work's task group: it answers while the work
        # drains and is shut down gracefully (hypercorn does not take cancellation well).
        async with anyio.create_task_group() as outer:
            if observed is not None and sock is not None:
                app = create_app(observed.monitor, observed.metrics)
                await outer.start(serve_http, app, sock, http_stop)
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(stop_on_signals, stop, on_signal)
                    tg.start_soon(progress.run)
                    if observed is not None:
                        tg.start_soon(observed.monitor.run)
                    duration = settings.duration if settings is not None else None
                    if duration is not None:
                        tg.start_soon(stop_after, duration, stop)
                    if settings is not None:
                        tg.start_soon(_deadline, service, stop, settings.shutdown_grace)
                    await work(stop)
                    tg.cancel_scope.cancel()
            finally:
                http_stop.set()
    finally:
        if sock is not None:
            sock.close()
    progress.show()
    progress.finish()
    log(service, "stopped")


async def _deadline(service: str, stop: anyio.Event, grace: float) -> None:
    """Bound a shutdown: ``grace`` seconds after ``stop``, exit with status 1.

    Draining waits on the store and Redis (a batch handed over is stored, whatever it
    takes); when they stay away, the process must still end. What is abandoned is not
    lost: unacknowledged signals are redelivered, unpublished ones stay in the outbox, and
    a collector's restart records the missed market data as a gap.
    """
    await stop.wait()
    await anyio.sleep(grace)
    warn(service, "shutdown exceeded its grace: exiting, in-flight work abandoned",
         grace=f"{grace:g}s")  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


async def run_app(app: App, settings: ServiceSettings) -> dict[str, Any]:
    """Serve ``app`` until it ends or is stopped; close its adapters; return its summary."""
    try:
        observed = observability(
            app.name, settings, app.checks, app.figures, app.latencies, app.operations
        )
        app.attach(observed.metrics)
        await serve(app.name, app.work, app.progress, app.clock, settings=settings,
                    observed=observed)  # fmt: skip
    finally:
        await app.close()
    return app.summary()
