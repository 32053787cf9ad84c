"""Signed Binance requests: HMAC-SHA256 (hex) or Ed25519 (base64) over the query string.

Binance signs the exact ``key=value&...`` text sent (query string, or body for POST),
including ``timestamp`` (milliseconds) and ``recvWindow``. The API key goes in the
``X-MBX-APIKEY`` header. Ed25519 needs the ``cryptography`` package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlencode

from algotrade.domain.errors import ConfigurationError

API_KEY_HEADER = "X-MBX-APIKEY"
DEFAULT_RECV_WINDOW_MS = 5000


class Signer(Protocol):
    """Signs the payload of one request."""

    def sign(self, payload: str) -> str:
        """Return the ``signature`` parameter for ``payload``."""
        ...


class HmacSigner:
    """HMAC-SHA256 with the API secret, hex-encoded (Binance's default key type)."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ConfigurationError("binance_api_secret", "is empty")
        self._secret = secret.encode()

    def __repr__(self) -> str:
        return "HmacSigner(secret=***)"

    def sign(self, payload: str) -> str:
        """Return the hex HMAC-SHA256 of ``payload``."""
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()


class Ed25519Signer:
    """Ed25519 with a PEM private key, base64-encoded (Binance's recommended key type)."""

    def __init__(self, private_key_pem: bytes, password: bytes | None = None) -> None:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
            from cryptography.hazmat.primitives.serialization import load_pem_private_key
        except ImportError:
            raise ConfigurationError(
                "binance_private_key", "Ed25519 keys need the cryptography package"
            ) from None
        key = load_pem_private_key(private_key_pem, password=password)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError("binance_private_key", "is not an Ed25519 private key")
        self._key = key

    def __repr__(self) -> str:
        return "Ed25519Signer(key=***)"

    def sign(self, payload: str) -> str:
        """Return the base64 Ed25519 signature of ``payload``."""
        return base64.b64encode(self._key.sign(payload.encode())).decode()


def signed_query(
    params: Mapping[str, str | int],
    signer: Signer,
    *,
    timestamp_ms: int,
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
) -> str:
    """Return ``params`` with ``recvWindow``, ``timestamp`` and ``signature`` appended, as
    the query string to send (in the order signed)."""
    payload = urlencode([*params.items(), ("recvWindow", recv_window_ms),
                         ("timestamp", timestamp_ms)])  # fmt: skip
    return f"{payload}&{urlencode({'signature': signer.sign(payload)})}"


def signed_params(
    params: Mapping[str, str | int],
    signer: Signer,
    *,
    timestamp_ms: int,
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
) -> dict[str, str | int]:
    """Return the ``params`` of a signed WebSocket API request: with ``recvWindow``,
    ``timestamp`` and ``signature``, signed over every other parameter sorted by name
    (``name=value`` joined by ``&``), as Binance's WebSocket API requires."""
    out: dict[str, str | int] = {**params, "recvWindow": recv_window_ms, "timestamp": timestamp_ms}
    payload = "&".join(f"{name}={out[name]}" for name in sorted(out))
    out["signature"] = signer.sign(payload)
    return out
