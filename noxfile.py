"""Automation: ``nox -s lint typecheck tests`` is what CI runs (through ``make test``)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
SOURCES = ("src", "tests", "bench", "fuzz", "strategies", "noxfile.py", ".ci/audit.py")


def install(session: nox.Session, *extras: str) -> None:
    """Install the project (editable) with the given extras."""
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff lint and format check, and the import-linter architecture contracts."""
    install(session)
    session.install("ruff>=0.6", "import-linter>=2.1")
    # setup.py too, which mypy does not check: setuptools ships no types everywhere
    session.run("ruff", "check", *SOURCES, "setup.py")
    session.run("ruff", "format", "--check", *SOURCES, "setup.py")
    session.run("lint-imports")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, the tests, the benchmarks and this file."""
    install(session, "dev")
    session.run("mypy", "--strict", *SOURCES)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite: unit, contract, integration and end-to-end (profiling, PNG reports
    and the bayes search included)."""
    install(session, "test", "profiling", "report", "optimize")
    session.run("pytest", *session.posargs)


#: The optional runtime extras: requirements.lock pins them too, and the image installs
#: the first two from it (the report's matplotlib is for `algotrade report --out x.png`).
RUNTIME_EXTRAS = ("profiling", "trading", "report", "optimize")

#: The newer Pythons algotrade supports; `make test` (and CI) runs PYTHON, the oldest.
NEWER_PYTHONS = ["3.12", "3.13"]


@nox.session(python=NEWER_PYTHONS)
def compat(session: nox.Session) -> None:
    """The test suite on Python 3.12 and 3.13 (``make compat`` finds them through pyenv).

    The chaos test runs in the tests session (3.11) only: it proves the services, not the
    interpreter, and takes the longest.
    """
    install(session, "test", "profiling")
    session.run("pytest", "--ignore=tests/chaos", *session.posargs)


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """The reliability proof alone, longer: ``nox -s chaos -- 600`` runs 600 s of chaos.

    The tests session runs it too, bounded to 60 s. ALGOTRADE_CHAOS_SEED picks the schedule.
    """
    install(session, "test", "profiling")
    seconds = session.posargs[0] if session.posargs else "300"
    session.run("pytest", "-s", "tests/chaos", env={"ALGOTRADE_CHAOS_SECONDS": seconds})


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks and rewrite docs/benchmarks.md with their results."""
    install(session, "test", "bench")  # Redis and MongoDB benchmarks start servers like the tests
    session.run("python", "bench/run_all.py", *session.posargs)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Coverage-guided fuzzing of every parser: ``nox -s fuzz -- 120`` gives each 120 s."""
    install(session, "test")
    seconds = session.posargs[0] if session.posargs else "60"
    for target in ("frame", "scan", "rest", "report", "entry", "candle", "config"):
        session.run("python", "fuzz/targets.py", target, f"-max_total_time={seconds}",
                    "-max_len=2048")  # fmt: skip


@nox.session(python=PYTHON)
def audit(session: nox.Session) -> None:
    """Vulnerability audit of the locked runtime dependencies (requirements.lock), run by CI.

    pip-audit's sources (PyPI's per-version JSON, osv.dev) do not answer from the CI
    machine; .ci/audit.py uses what does (PyPI's per-project JSON): a pin at its latest
    release is checked exactly, a pin behind it is listed as unverified. ``nox -s
    pip_audit`` runs pip-audit itself where its sources are reachable.
    """
    session.run("python", ".ci/audit.py", "requirements.lock", *session.posargs)


@nox.session(python=PYTHON)
def pip_audit(session: nox.Session) -> None:
    """pip-audit of requirements.lock (needs PyPI's per-version JSON API or osv.dev)."""
    session.install("pip-audit>=2.7")
    session.run("pip-audit", "--strict", "--no-deps", "-r", "requirements.lock")


@nox.session(python=PYTHON)
def lock(session: nox.Session) -> None:
    """Rewrite requirements.lock: the exact runtime dependencies of a clean install, with
    every optional runtime extra (the image installs from it, offline)."""
    install(session, *RUNTIME_EXTRAS)
    frozen = session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=True)
    lines = [line for line in str(frozen).splitlines() if line and not line.startswith("algotrade")]
    header = "# Runtime dependencies of `pip install .`, written by `nox -s lock`.\n"
    with open("requirements.lock", "w", encoding="utf-8") as out:
        out.write(header + "\n".join(lines) + "\n")
