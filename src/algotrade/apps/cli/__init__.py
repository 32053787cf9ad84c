"""The ``algotrade`` command line: one Typer application, its commands in modules by kind.

``options`` (flags and the settings built from them), ``exits`` (how a command ends),
``service_commands`` (run, collector, processor, trader, record, health), ``listings``
(signals, orders, positions, depth, gaps), ``research`` (backtest, parity, report,
strategies), ``optimizing`` (optimize) and ``data`` (download).
"""

from __future__ import annotations

import sys

import typer

from algotrade.apps.cli import exits
from algotrade.apps.cli.app import app
from algotrade.apps.settings import unknown_variables

# The import order is the order of the commands in --help.
# isort: off
from algotrade.apps.cli import service_commands
from algotrade.apps.cli import listings
from algotrade.apps.cli import research
from algotrade.apps.cli import optimizing
from algotrade.apps.cli import data

# isort: on

__all__ = [
    "app", "data", "listings", "main", "optimizing", "research", "service_commands",
]  # fmt: skip


@app.callback()
def _warn_unknown_variables() -> None:
    """Warn, on stderr, about every ALGOTRADE_* variable set that nothing reads."""
    if not unknown_variables(()):  # no ALGOTRADE_* beyond the few read apart: no tree to build
        return
    for name in unknown_variables(exits.declared_variables()):
        typer.echo(f"algotrade: warning: {name} is set but is no setting of algotrade "
                   "(misspelt?); it is ignored", err=True)  # fmt: skip


def main() -> None:
    """Entry point of the ``algotrade`` console script."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during shutdown
        sys.exit(130)
