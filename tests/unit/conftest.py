"""Unit tests run without network sockets: any attempt to connect fails the test."""

from __future__ import annotations

import socket
from typing import Any

import pytest


class NetworkUsedError(AssertionError):
    """A unit test tried to open a network connection."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every outgoing connection in unit tests an immediate failure."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NetworkUsedError(f"unit tests must not use the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
