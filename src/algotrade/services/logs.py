"""Where the use cases write their log lines: a sink the entry points install.

The services call :func:`log` and :func:`warn` with an app name, an event and fields. Until
an entry point installs its sink (``algotrade.apps.logs`` installs the structured JSON
logger when it is imported), lines go to the standard library's ``logging`` module under
the ``algotrade`` logger, so a library user sees them the usual way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

_stdlib = logging.getLogger("algotrade")


Sink = Callable[..., None]
"""Writes one log line: ``sink(app, event, **fields)``."""


def _info(app: str, message: str, /, **fields: object) -> None:
    _stdlib.info("%s %s %s", app, message, fields)


def _warning(app: str, message: str, /, **fields: object) -> None:
    _stdlib.warning("%s %s %s", app, message, fields)


_sinks: list[Sink] = [_info, _warning]


def install(info: Sink, warning: Sink) -> None:
    """Send the services' lines to ``info`` (units of work) and ``warning`` (problems)."""
    _sinks[:] = [info, warning]


def log(app: str, message: str, /, **fields: object) -> None:
    """Log one unit of work: ``message`` as the event, with the app's name and ``fields``."""
    _sinks[0](app, message, **fields)


def warn(app: str, message: str, /, **fields: object) -> None:
    """Log a problem the service survives (a retry, a rejected input, an outage)."""
    _sinks[1](app, message, **fields)
