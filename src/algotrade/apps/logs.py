"""Structured logs: one line per unit of work, JSON off a terminal, readable on one.

Every line carries ``timestamp`` (UTC, ISO 8601), ``level``, ``app`` (collector, processor,
trader, run, store...) and ``event`` (what happened), then the unit's own fields. Services
log on stdout, as containers expect; a command asked for ``--json`` output logs on stderr so
that its stdout stays one JSON document.

URLs are passed through :func:`redact` before they are logged: credentials never appear.
"""

from __future__ import annotations

import datetime
import functools
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TextIO

import orjson
import structlog

from algotrade.domain.values import decimal_text
from algotrade.services import logs as services_logs

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@", re.I)
_SECRET_KEYS = ("password", "secret", "api_key", "token")


_QUERY_SECRET = re.compile(
    r"(?P<key>[?&][^=&\s]*(?:password|secret|token|apikey|api_key)[^=&\s]*=)[^&\s]*", re.I
)


def redact(text: str) -> str:
    """Return ``text`` with the password of every ``scheme://user:password@`` replaced, and
    the value of every URL query parameter naming a secret (``tlsCertificateKeyFilePassword``,
    ``ssl_password``, ...)."""
    return _QUERY_SECRET.sub(r"\g<key>***", _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text))


def _json_default(value: object) -> str:
    if value.__class__ is Decimal:
        return decimal_text(value)
    return str(value)


def _serialize(event: Mapping[str, Any], **_: Any) -> bytes:
    return orjson.dumps(event, default=_json_default)


_second: list[Any] = [0, ""]


def _timestamp(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Add the UTC time in ISO 8601 with microseconds (the date part formatted once a
    second: structlog's TimeStamper costs more than the rest of a line)."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0] = second
        _second[1] = datetime.datetime.fromtimestamp(second, datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
    event["timestamp"] = f"{_second[1]}.{int((now - second) * 1e6):06d}Z"
    return event


@functools.cache
def _secret(key: str) -> bool:
    return any(word in key for word in _SECRET_KEYS)


def _scrub(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Hide secret-named fields and credentials inside any string field."""
    for key, value in event.items():
        if _secret(key):
            event[key] = "***"
        elif value.__class__ is str:
            if "@" in value:
                event[key] = redact(value)
        elif isinstance(value, BaseException):  # driver errors may quote a URL
            event[key] = redact(str(value))
    return event


def configure_logging(
    stream: TextIO | None = None, *, json: bool | None = None, level: str = "info"
) -> None:
    """Send logs to ``stream`` (stdout by default): JSON lines, or console lines on a terminal.

    Args:
        stream: where lines go.
        json: force JSON (True) or console rendering (False); ``None`` decides by whether
            ``stream`` is a terminal.
        level: the least severe level written (``info``, ``warning``, ``error``).
    """
    global _logger, _stream
    stream = stream or sys.stdout
    _stream = stream  # held: a collected text stream would close the buffer written to
    as_json = not stream.isatty() if json is None else json
    shared: list[Any] = [structlog.processors.add_log_level, _timestamp, _scrub]
    renderer: Any
    factory: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer(serializer=_serialize)
        factory = structlog.BytesLoggerFactory(stream.buffer)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        factory = structlog.PrintLoggerFactory(stream)
    global _write
    _write = None
    if as_json and logging.getLevelNamesMapping()[level.upper()] <= logging.INFO:
        buffer = stream.buffer

        def write(line: bytes) -> None:
            buffer.write(line)
            buffer.flush()

        _write = write
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=factory,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        cache_logger_on_first_use=True,
    )
    _logger = structlog.get_logger()  # a new proxy: it binds to this configuration


_logger: Any = structlog.get_logger()
_stream: TextIO | None = None


_write: Callable[[bytes], None] | None = None


def log(app: str, message: str, **fields: object) -> None:
    """Log one unit of work: ``message`` as the event, with the app's name and ``fields``.

    JSON lines at the info level take a direct path: the same processors and the same line
    structlog would write, without its dispatch (a trader logs every order: this path is
    about a fifth of a paper order's cost).
    """
    if _write is not None:
        event: dict[str, Any] = {"app": app, **fields, "event": message, "level": "info"}
        _write(_serialize(_scrub(None, "", _timestamp(None, "", event))) + b"\n")
        return
    _logger.info(message, app=app, **fields)


def warn(app: str, message: str, **fields: object) -> None:
    """Log a problem the service survives (a retry, a rejected input, an outage)."""
    _logger.warning(message, app=app, **fields)


services_logs.install(log, warn)  # the use cases log through this module's logger
