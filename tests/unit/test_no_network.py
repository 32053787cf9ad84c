"""The unit-test network guard works."""

from __future__ import annotations

import socket

import pytest

from tests.unit.conftest import NetworkUsedError


def test_network_is_refused() -> None:
    """The guard itself works: connecting raises."""
    with pytest.raises(NetworkUsedError):
        socket.create_connection(("127.0.0.1", 9))
