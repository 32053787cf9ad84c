"""Coverage-guided fuzzing with atheris (libFuzzer), bounded: each target of
fuzz/targets.py runs a few thousand mutated inputs from its seeds; a crash fails the test
with the input libFuzzer saved. `nox -s fuzz` runs them for longer."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

TARGETS = ["frame", "scan", "rest", "report", "entry", "candle", "config"]
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris does not install here"
)


@pytest.mark.parametrize("target", TARGETS)
def test_no_input_crashes_the_parser(target: str, tmp_path: Path) -> None:
    """Coverage-guided fuzzing of each parser finds no input that crashes it."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "targets.py"), target, "-runs=4000",
         "-max_len=1024", "-seed=1", f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus")],
        capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path,
    )  # fmt: skip
    crashes = list(tmp_path.glob("crash-*"))
    assert done.returncode == 0, done.stderr[-3000:] + f"\ncrash inputs: {crashes}"
    assert "DONE" in done.stderr
    assert not crashes
    assert (tmp_path / "corpus" / "seed-0").exists()  # its own corpus: nothing left behind
