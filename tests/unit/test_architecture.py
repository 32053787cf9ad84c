"""The domain imports the standard library only, whatever else gets installed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import algotrade.domain

DOMAIN = Path(algotrade.domain.__file__).parent


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
