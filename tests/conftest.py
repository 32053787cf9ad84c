"""Shared fixtures: where the shared recording lives, and small event builders."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORDING = (
    ROOT.parent / "shared" / "data" / "binance" / "spot-2021-04-04-btcusdt-ethusdt-dotusdt.raw"
)


@pytest.fixture
def recording() -> Path:
    """Return the shared Binance recording, skipping the test when it is absent."""
    if not RECORDING.is_file():
        pytest.skip(
            f"shared recording not found at {RECORDING} (see shared/data/binance/README.md)"
        )
    return RECORDING


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the backend the services use)."""
    return "asyncio"
