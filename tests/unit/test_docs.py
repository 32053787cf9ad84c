"""The Python examples in README.md and docs/ run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
EXAMPLES = [
    pytest.param(code, id=f"{page.name}:{i}")
    for page in PAGES
    for i, code in enumerate(BLOCK.findall(page.read_text(encoding="utf-8")))
]


def test_there_are_examples() -> None:
    """The README shows at least one runnable library example."""
    assert EXAMPLES


PRINTS = re.compile(r"#\s*prints:\s*(.+?)\s*$", re.MULTILINE)


@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each example runs and prints, line for line, what its ``# prints:`` comments say."""
    expected = PRINTS.findall(code)
    assert expected, "an example shows what it prints in a '# prints: ...' comment"
    exec(compile(code, "<docs>", "exec"), {})
    printed = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert [line for line in printed if line in expected] == expected


def test_the_strategy_walkthrough_runs_command_by_command(recording: Path, tmp_path: Path) -> None:
    """Every command of docs/strategies.md's walkthrough succeeds, in order, from a
    directory holding the repository's strategies/ (session.raw: the shared recording)."""
    page = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
    section = page.split("## From a file to the stack, in commands", 1)[1].split("\n## ", 1)[0]
    commands = [line[2:] for line in section.splitlines() if line.startswith("$ algotrade ")]
    assert len(commands) == 7
    (tmp_path / "strategies").symlink_to(ROOT / "strategies")
    (tmp_path / "session.raw").symlink_to(recording)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALGOTRADE_")}
    for command in commands:
        args = shlex.split(command)[1:]
        done = subprocess.run(
            [sys.executable, "-m", "algotrade", *args],
            capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        if args[0] == "parity":
            assert "identical: every signal, id and field alike" in done.stdout
        if args[0] == "signals":
            assert "signal(s)" in done.stdout
    assert (tmp_path / "breakout.html").stat().st_size > 1000
