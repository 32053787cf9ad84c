"""Test helpers: fake exchanges, servers, builders, and where the shared data lives."""

from pathlib import Path

#: The real Binance recording shared beside the repository (``../shared/data/binance/``);
#: tests skip and benchmarks leave out what needs it when it is absent.
RECORDING = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "binance"
    / "spot-2021-04-04-btcusdt-ethusdt-dotusdt.raw"
)
