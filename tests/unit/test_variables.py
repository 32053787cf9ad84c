"""Every ALGOTRADE_* variable has one reader, and one set by mistake is named, not ignored."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from typer.testing import CliRunner

from algotrade.apps.cli import app
from algotrade.apps.cli.exits import declared_variables
from algotrade.apps.logs import configure_logging
from algotrade.apps.settings import HARNESS_VARIABLES, OTHER_VARIABLES, unknown_variables

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.compile(r"\bALGOTRADE_[A-Z0-9_]*[A-Z0-9]\b")


def test_a_misspelt_variable_is_unknown_and_the_real_ones_are_not() -> None:
    """A variable no option, setting or harness reads is unknown; the others are not."""
    environ = {
        "ALGOTRADE_STROE": "x",  # misspelt
        "ALGOTRADE_STORE": "memory",  # an option's
        "ALGOTRADE_MONGO_URL": "mongodb://h",  # the second variable of --store
        "ALGOTRADE_SHUTDOWN_GRACE": "5s",  # read by the settings module
        "ALGOTRADE_CHAOS_SEED": "7",  # the chaos test's
        "PATH": "/bin",
    }
    assert unknown_variables(declared_variables(), environ) == ["ALGOTRADE_STROE"]


def test_every_variable_the_project_names_is_read_by_something() -> None:
    """Each ALGOTRADE_* name in the sources, docs, compose file and .env.example is an
    option's, one of the settings module's, or the harness's."""
    known = declared_variables() | set(OTHER_VARIABLES) | HARNESS_VARIABLES
    files = [
        *ROOT.joinpath("src").rglob("*.py"), *ROOT.joinpath("docs").glob("*.md"),
        *ROOT.joinpath("tests").rglob("*.py"), ROOT / "README.md", ROOT / "docker-compose.yml",
        ROOT / ".env.example",
    ]  # fmt: skip
    named = {
        (name, path.relative_to(ROOT).as_posix())
        for path in files
        for name in NAMED.findall(path.read_text(encoding="utf-8"))
        # a constant of the domain, and the misspelling the examples use
        if name not in {"ALGOTRADE_NAMESPACE", "ALGOTRADE_STROE"}
    }
    assert {(n, where) for n, where in named if n not in known} == set()
    assert len({n for n, _ in named}) > 40  # the scan found the names


def test_the_command_line_warns_about_an_unknown_variable_on_stderr() -> None:
    """A command run with a misspelt variable says so on stderr; its JSON stays clean."""
    try:
        result = CliRunner().invoke(
            app, ["positions", "--store", "memory", "--json"], env={"ALGOTRADE_STROE": "x"}
        )
    finally:
        configure_logging(sys.stderr)  # a command logs into the runner's stream, closed after
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "[]"
    assert "ALGOTRADE_STROE is set but is no setting of algotrade" in result.stderr
