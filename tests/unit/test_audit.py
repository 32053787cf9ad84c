"""The CI's vulnerability audit (.ci/audit.py): verdicts and exit status, without a network."""

from __future__ import annotations

import importlib.util
import urllib.error
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PYPI: dict[str, dict[str, Any]] = {
    "clean": {"info": {"version": "1.0"}, "vulnerabilities": []},
    "old": {"info": {"version": "2.0"}, "vulnerabilities": []},
    "bad": {"info": {"version": "3.1"}, "vulnerabilities": [{"id": "GHSA-xxxx"}]},
}


def fake_project(name: str) -> dict[str, Any]:
    if name not in PYPI:
        raise urllib.error.URLError("404")
    return PYPI[name]


@pytest.mark.parametrize(
    ("lock", "strict", "status"),
    [
        ("clean==1.0\n", False, 0),
        ("# header\nclean==1.0\nold==1.5\n", False, 0),  # behind: listed, not failed
        ("clean==1.0\nold==1.5\n", True, 1),  # --strict: unverified fails
        ("bad==3.1\n", False, 1),  # a known vulnerability
        ("missing==1.0\n", False, 1),  # PyPI did not answer: no pass without a look
    ],
)
def test_the_audit_fails_on_what_it_finds_or_cannot_see(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    lock: str,
    strict: bool,
    status: int,
) -> None:
    """The dependency audit fails on a known vulnerability, and on a package it cannot check."""
    audit = load()
    monkeypatch.setattr(audit, "project", fake_project)
    path = tmp_path / "requirements.lock"
    path.write_text(lock)
    assert audit.main([str(path), *(["--strict"] if strict else [])]) == status
    out = capsys.readouterr().out
    if "old==" in lock:
        assert "unverified" in out
        assert "latest is 2.0" in out
    if "bad==" in lock:
        assert "GHSA-xxxx" in out


def test_a_line_that_is_not_an_exact_pin_is_refused(tmp_path: Path) -> None:
    """A lock line that is not an exact pin stops the audit with a message naming it."""
    path = tmp_path / "requirements.lock"
    path.write_text("anyio>=4\n")
    with pytest.raises(SystemExit, match="not an exact pin"):
        load().pins(path)
