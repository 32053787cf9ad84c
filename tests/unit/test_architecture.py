"""The rooms hold: the domain imports the standard library only and the use cases the
domain (and anyio), whatever else gets installed; no use case reads a clock of its own."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import algotrade.domain
import algotrade.services

DOMAIN = Path(algotrade.domain.__file__).parent
SERVICES = Path(algotrade.services.__file__).parent


def imported_roots(path: Path) -> set[str]:
    """Return the top-level names a module imports (absolute imports only)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("algotrade."):
                roots.add(".".join(node.module.split(".")[:2]))
            else:
                roots.add(node.module.split(".")[0])
    return roots


def test_domain_imports_only_stdlib_and_itself() -> None:
    """Every import in algotrade.domain is the standard library or algotrade.domain."""
    offenders = {}
    for path in sorted(DOMAIN.glob("*.py")):
        bad = {
            r
            for r in imported_roots(path)
            if r not in sys.stdlib_module_names and r not in {"__future__", "algotrade.domain"}
        }
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_services_import_only_the_domain_stdlib_and_anyio() -> None:
    """Every import in algotrade.services is the standard library, anyio, the domain or
    another use case."""
    allowed = {"__future__", "anyio", "algotrade.domain", "algotrade.services"}
    offenders = {}
    for path in sorted(SERVICES.glob("*.py")):
        bad = {
            r for r in imported_roots(path) if r not in sys.stdlib_module_names and r not in allowed
        }
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_no_use_case_reads_the_system_clock() -> None:
    """The clock is a required argument in the services: none reads time itself."""
    readers = {}
    for path in sorted(SERVICES.glob("*.py")):
        calls = {
            f"{node.value.id}.{node.attr}"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "time"
            and node.attr in {"time", "monotonic", "perf_counter", "time_ns", "monotonic_ns"}
        }
        if calls or "SystemClock" in path.read_text(encoding="utf-8"):
            readers[path.name] = sorted(calls) or ["SystemClock"]
    assert readers == {}
