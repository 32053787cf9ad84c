"""Binance's addresses, apart from the client code (a command that only shows them as
defaults imports no HTTP or WebSocket client)."""

from urllib.parse import urlsplit

DEFAULT_WS_URL = "wss://stream.binance.com:9443"
DEFAULT_REST_URL = "https://api.binance.com"
TESTNET_REST_URL = "https://testnet.binance.vision"
#: The WebSocket API, where Spot's user data stream is (the listen keys are gone).
TESTNET_STREAM_URL = "wss://ws-api.testnet.binance.vision/ws-api/v3"
PRODUCTION_REST_URL = "https://api.binance.com"
PRODUCTION_STREAM_URL = "wss://ws-api.binance.com:443/ws-api/v3"


def is_production_url(url: str) -> bool:
    """Return whether ``url`` points at Binance's production API (real money)."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "binance.com" or host.endswith((".binance.com", ".binance.us"))
