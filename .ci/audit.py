"""Audit requirements.lock against PyPI's vulnerability data, with what this network reaches.

pip-audit asks PyPI for each pinned version (``/pypi/<name>/<version>/json``) or osv.dev;
from the CI machine only the package index answers, and its per-version JSON answers 404.
The per-project JSON (``/pypi/<name>/json``) does answer: it carries the latest release's
known vulnerabilities. So:

* a pin at the latest release is checked exactly (its vulnerabilities are that list);
* a pin behind the latest release cannot be checked here: it is listed as unverified, with
  the release it trails (``--strict`` makes that a failure too);
* a known vulnerability, an unknown project, or PyPI not answering fails the audit: an
  audit that cannot look is not a pass.

Usage: ``python .ci/audit.py [requirements.lock] [--strict]`` (``nox -s audit``).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

INDEX = "https://pypi.org/pypi"


def pins(path: Path) -> list[tuple[str, str]]:
    """Return the ``name==version`` lines of a lock file."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"{path}: not an exact pin: {line!r}")
        out.append((name.strip(), version.strip()))
    return out


def project(name: str) -> dict[str, Any]:
    """Return PyPI's JSON for a project (raises on any failure)."""
    with urllib.request.urlopen(f"{INDEX}/{name}/json", timeout=30) as answer:
        data: dict[str, Any] = json.load(answer)
        return data


def check(pin: tuple[str, str]) -> tuple[str, str, str, str]:
    """Return (name, version, verdict, detail) for one pin."""
    name, version = pin
    try:
        data = project(name)
    except (urllib.error.URLError, TimeoutError, ValueError) as e:
        return name, version, "error", f"PyPI did not answer: {e}"
    latest = str(data["info"]["version"])
    if latest != version:
        return name, version, "unverified", f"latest is {latest}"
    found = data.get("vulnerabilities") or []
    if found:
        ids = ", ".join(str(v.get("id")) for v in found)
        return name, version, "vulnerable", ids
    return name, version, "ok", "no known vulnerability"


def main(argv: list[str]) -> int:
    strict = "--strict" in argv
    files = [a for a in argv if not a.startswith("--")]
    lock = Path(files[0] if files else "requirements.lock")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(check, pins(lock)))
    width = max(len(name) for name, *_ in results)
    for name, version, verdict, detail in results:
        print(f"{name:<{width}}  {version:<18} {verdict:<10} {detail}")
    counts = {
        v: sum(1 for r in results if r[2] == v) for v in ("ok", "unverified", "vulnerable", "error")
    }
    print(
        f"{len(results)} pins: {counts['ok']} checked clean, {counts['unverified']} behind their"
        f" latest release (not checkable here), {counts['vulnerable']} vulnerable,"
        f" {counts['error']} not answered"
    )
    failed = counts["vulnerable"] + counts["error"] + (counts["unverified"] if strict else 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
