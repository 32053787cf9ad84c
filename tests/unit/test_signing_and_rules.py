"""Binance request signing (the documented vectors) and the order filters of exchangeInfo."""

from __future__ import annotations

import base64
from decimal import Decimal

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from algotrade.adapters.binance.messages import parse_symbol_rules
from algotrade.adapters.binance.signing import (
    Ed25519Signer,
    HmacSigner,
    signed_params,
    signed_query,
)
from algotrade.adapters.memory import SystemClock
from algotrade.apps.wiring import signer
from algotrade.domain.errors import ConfigurationError, InvalidInputError
from algotrade.domain.rules import SymbolRules, fit_limit_order, fit_market_order

# Binance's documented example (spot API docs, "SIGNED endpoint examples for POST /api/v3/order")
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
QUERY = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
    "&timestamp=1499827319559"
)
SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
DOCUMENTED_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"


def test_hmac_reproduces_the_documented_signature() -> None:
    """The HMAC signer reproduces the signature of Binance's documented example."""
    assert HmacSigner(SECRET).sign(QUERY) == SIGNATURE


def test_signed_query_appends_window_timestamp_and_signature_in_the_signed_order() -> None:
    """A signed query appends the receive window, the timestamp and the signature, in the order
    signed."""
    params = {"symbol": "LTCBTC", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
              "quantity": "1", "price": "0.1"}  # fmt: skip
    query = signed_query(params, HmacSigner(SECRET), timestamp_ms=1499827319559)
    assert query == f"{QUERY}&signature={SIGNATURE}"


def test_websocket_api_params_are_signed_sorted_by_name_as_documented() -> None:
    """Binance's WebSocket API example ("SIGNED request example (HMAC)", order.place): every
    parameter but the signature, sorted by name, ``name=value`` joined by ``&``."""
    params = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
              "quantity": "0.01000000", "price": "52000.00", "newOrderRespType": "ACK",
              "apiKey": DOCUMENTED_API_KEY}  # fmt: skip
    signed = signed_params(
        params, HmacSigner(SECRET), timestamp_ms=1645423376532, recv_window_ms=100
    )
    assert signed == {
        **params,
        "recvWindow": 100,
        "timestamp": 1645423376532,
        "signature": "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a",
    }


def test_ed25519_signatures_verify_with_the_public_key() -> None:
    """An Ed25519 signature verifies with the key's public half."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    signature = Ed25519Signer(pem).sign(QUERY)
    assert len(base64.b64decode(signature)) == 64  # an Ed25519 signature, base64-encoded
    key.public_key().verify(base64.b64decode(signature), QUERY.encode())  # raises if wrong


def test_secrets_never_show_in_representations() -> None:
    """No signer, gateway or stream shows its secret in its representation; an empty secret is
    refused."""
    assert SECRET not in repr(HmacSigner(SECRET))
    with pytest.raises(ConfigurationError):
        HmacSigner("")


INFO = {
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00",
                 "tickSize": "0.01"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00000000",
                 "stepSize": "0.00001"},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000",
                 "maxQty": "120.00000000", "stepSize": "0.00000000"},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False},
            ],
        }
    ]
}  # fmt: skip


def test_exchange_info_filters_are_read() -> None:
    """exchangeInfo's filters are read into the symbol's rules."""
    rules = parse_symbol_rules("BTCUSDT", orjson.dumps(INFO))
    assert rules.tick_size == Decimal("0.01")
    assert rules.step_size == Decimal("0.00001")
    assert rules.market_max_qty == 120
    assert rules.min_notional == 5
    with pytest.raises(InvalidInputError, match="ETHUSDT"):
        parse_symbol_rules("ETHUSDT", orjson.dumps(INFO))


def test_orders_are_fitted_to_the_filters_or_rejected_with_the_reason() -> None:
    """An order is rounded to the filters, or rejected saying which filter it cannot meet."""
    rules = parse_symbol_rules("BTCUSDT", orjson.dumps(INFO))
    assert fit_market_order(rules, Decimal("0.0123456"), Decimal(60000)) == Decimal("0.01234")
    assert "below the minimum 5" in str(fit_market_order(rules, Decimal("0.00005"), Decimal(60000)))
    assert "above the maximum 120" in str(fit_market_order(rules, Decimal(500), Decimal(1)))
    assert "below the minimum" in str(fit_market_order(rules, Decimal("0.000001"), Decimal(1)))
    assert fit_limit_order(rules, Decimal("0.5"), Decimal("60000.129")) == (
        Decimal("0.50000"), Decimal("60000.12"),
    )  # fmt: skip
    assert "tick size" in str(fit_limit_order(rules, Decimal(1), Decimal("0.001")))
    assert fit_market_order(SymbolRules("X"), Decimal("0.3"), Decimal(1)) == Decimal("0.3")


def test_trading_settings_and_clients_never_show_the_keys() -> None:
    """The Binance settings, gateway and user stream hide the API key and secret."""
    from algotrade.adapters.binance.endpoints import is_production_url
    from algotrade.adapters.binance.trading import BinanceGateway
    from algotrade.adapters.binance.userstream import BinanceUserStream
    from algotrade.apps.settings import BinanceTradingSettings

    settings = BinanceTradingSettings("the-api-key", SECRET)
    shown = " ".join(
        [
            repr(settings),
            repr(
                BinanceGateway(
                    settings.rest_url, settings.api_key, signer(settings), clock=SystemClock()
                )
            ),
            repr(BinanceUserStream(settings.stream_url, settings.api_key, signer(settings))),
        ]
    )

    assert "the-api-key" not in shown
    bare = BinanceUserStream("ws://127.0.0.1:8765", "k", signer(settings))
    assert bare.stream_url == "ws://127.0.0.1:8765/ws-api/v3"  # the path is added
    assert SECRET not in shown
    assert "testnet.binance.vision" in shown
    assert is_production_url("https://api.binance.com")
    assert is_production_url("wss://stream.binance.com:9443")
    assert not is_production_url(settings.rest_url)
    assert not is_production_url("http://127.0.0.1:8000")


def test_cancel_after_is_a_positive_duration_or_never() -> None:
    """``--cancel-after 5m`` reaches the follower's settings in seconds; unset is never; a
    zero or malformed delay is a configuration error naming the option."""
    from algotrade.apps.cli.options import binance_trading_settings

    def settings(cancel_after: str | None) -> float | None:
        found = binance_trading_settings(
            "binance", "key", SECRET, None, None, None, production=False,
            reconcile_every="60s", cancel_after=cancel_after,
        )  # fmt: skip
        assert found is not None
        return found.cancel_after

    assert settings("5m") == 300.0
    assert settings(None) is None
    for bad in ("0s", "soon"):
        with pytest.raises(ConfigurationError, match="cancel_after"):
            settings(bad)
