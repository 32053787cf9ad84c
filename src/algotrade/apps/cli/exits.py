"""How a command ends: usage errors (status 2), algotrade errors in one line (status 1),
a run's figures printed as a table or as JSON."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import anyio
import orjson
import typer

from algotrade.apps.cli.app import app
from algotrade.apps.common import (
    tune_gc,
)
from algotrade.apps.logs import configure_logging
from algotrade.domain.errors import AlgotradeError, ConfigurationError, leaves

T = TypeVar("T")


def fail(message: str) -> NoReturn:
    """Print a one-line usage error and exit with status 2."""
    typer.echo(f"algotrade: error: {message}", err=True)
    raise typer.Exit(2)


def checked(build: Callable[[], T]) -> T:
    """Run a settings builder; turn configuration errors, and a file named by an option
    that cannot be used (a name too long, no permission), into exit status 2."""
    try:
        return build()
    except ConfigurationError as e:
        fail(f"{_named(e.name)}: {str(e).split(': ', 1)[1]}")
    except OSError as e:
        fail(f"{str(e.filename)!r}: {e.strerror or e}" if e.filename else str(e))


def _named(name: str) -> str:
    """Return how users set ``name``: ``--option (env var: VARIABLE)``, or the variable."""
    if name.isupper():
        return name  # an environment variable with no option (PYROSCOPE_SERVER_ADDRESS)
    option = f"--{name.replace('_', '-')}"
    envvar = option_variables().get(option)
    return f"{option} (env var: {envvar})" if envvar else option


@functools.cache
def _declared() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Return each option's flags with the environment variables it reads, for every
    command (the Typer app's tree, built once)."""
    out: list[tuple[str, tuple[str, ...]]] = []
    commands = [typer.main.get_command(app)]
    while commands:
        command = commands.pop()
        commands.extend(getattr(command, "commands", {}).values())
        for param in command.params:
            envvar = param.envvar
            variables = (envvar,) if isinstance(envvar, str) else tuple(envvar or ())
            out.extend((opt, variables) for opt in param.opts if variables)
    return tuple(out)


def option_variables() -> dict[str, str]:
    """Return each option's (first) environment variable, read from the commands themselves."""
    found: dict[str, str] = {}
    for opt, variables in _declared():
        found.setdefault(opt, variables[0])
    return found


def declared_variables() -> set[str]:
    """Return every environment variable an option of any command reads."""
    return {v for _, variables in _declared() for v in variables}


def option_error(name: str, message: str) -> NoReturn:
    raise ConfigurationError(name, message)


def execute(
    main: Callable[[], Coroutine[Any, Any, T]],
    *,
    logs_on_stdout: bool = False,
    latency: bool = False,
) -> T:
    """Run a coroutine; report algotrade errors in one line with exit status 1.

    Services log on stdout (``logs_on_stdout``); commands that print results, or were asked
    for ``--json``, log on stderr. ``latency``: a service signals pass through (see
    :func:`~algotrade.apps.common.tune_gc`).
    """
    configure_logging(sys.stdout if logs_on_stdout else sys.stderr)
    tune_gc(latency=latency)
    try:
        return anyio.run(main)
    except (AlgotradeError, BaseExceptionGroup) as e:
        found = reportable(e)
        if found is None:
            raise  # a bug: its traceback is what a report needs
        if isinstance(found, ConfigurationError):
            message = str(found).split(": ", 1)[-1]
            typer.echo(f"algotrade: error: {_named(found.name)}: {message}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"algotrade: {found}", err=True)
        raise typer.Exit(1) from None


def reportable(error: BaseException) -> AlgotradeError | None:
    """Return the algotrade error that ended a run, also from inside task groups (whose
    exception groups hold it beside the cancellations it caused); ``None`` when anything
    else is in the group too (a bug keeps its traceback)."""
    found = list(leaves(error))
    ours = [e for e in found if isinstance(e, AlgotradeError)]
    others = [e for e in found if not isinstance(e, AlgotradeError | asyncio.CancelledError)]
    return ours[0] if ours and not others else None


def print_summary(title: str, figures: dict[str, Any], as_json: bool) -> None:
    """Print a run's figures as a two-column table (``-`` where a figure does not apply,
    as ``published`` without a Redis relay) or as JSON (``null`` there)."""
    if as_json:
        typer.echo(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(title)
    for key, value in figures.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                typer.echo(f"  {key} {sub}:")
                for k, v in subvalue.items() if isinstance(subvalue, dict) else [(sub, subvalue)]:
                    typer.echo(f"    {k:<16} {'-' if v is None else v}")
            continue
        shown = f"{value:,}" if isinstance(value, int) else "-" if value is None else value
        typer.echo(f"  {key:<18} {shown}")
