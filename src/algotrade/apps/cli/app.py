"""The ``algotrade`` Typer application the command modules register on."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Collect market data, run a strategy (the SMA crossover, or yours), and act on "
    "its signals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
