"""The Python examples in README.md and docs/ run as written."""

from __future__ import annotations

import re

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
