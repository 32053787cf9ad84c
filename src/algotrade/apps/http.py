"""The HTTP side of every service: a Quart app served by hypercorn.

Endpoints (nothing else is exposed: no data, no configuration):

- ``GET /healthcheck``: 200 ``{"status": "UP", ...}`` or 503 ``{"status": "DOWN",
  "checks": {...}}`` naming each failing dependency (the seed's contract).
- ``GET /livez``: the event loop turns.
- ``GET /readyz``: dependencies answer and data flows.
- ``GET /metrics``: Prometheus text format.
- ``GET /latencies``: every latency histogram exactly (:mod:`algotrade.apps.latency`).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import anyio
import anyio.abc
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, Response

from algotrade.apps.health import Monitor
from algotrade.apps.logs import log
from algotrade.apps.metrics import CONTENT_TYPE, ServiceMetrics
from algotrade.domain.errors import ConfigurationError


def create_app(monitor: Monitor, metrics: ServiceMetrics) -> Quart:
    """Return the service's health and metrics app."""
    app = Quart(f"algotrade-{monitor.service}")

    def answer(status: int, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        return body, status

    @app.get("/healthcheck")
    async def healthcheck() -> tuple[dict[str, Any], int]:
        return answer(*monitor.healthcheck())

    @app.get("/livez")
    async def livez() -> tuple[dict[str, Any], int]:
        return answer(*monitor.livez())

    @app.get("/readyz")
    async def readyz() -> tuple[dict[str, Any], int]:
        return answer(*monitor.readyz())

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), content_type=CONTENT_TYPE)

    @app.get("/latencies")
    async def latencies() -> dict[str, Any]:
        return metrics.latencies()

    return app


def listen(host: str, port: int) -> socket.socket:
    """Open the listening socket now, so a taken port is a clear start-up error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ConfigurationError("port", f"cannot listen on {host}:{port}: {e.strerror}") from e
    sock.setblocking(False)
    return sock


async def serve_http(
    app: Quart,
    sock: socket.socket,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set."""
    config = Config()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn closes its own copy
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 2.0
    host, port = sock.getsockname()[:2]
    log(app.name.removeprefix("algotrade-"), "http listening", host=host, port=port)
    task_status.started()
    try:
        await serve(app, config, shutdown_trigger=stop.wait)
    finally:
        sock.close()
