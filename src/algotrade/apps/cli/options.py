"""Options of the commands (their flags, variables and help) and the settings built
from them: each value is checked once, here, with an error naming the option."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer

from algotrade.adapters.binance.endpoints import (
    DEFAULT_REST_URL,
    DEFAULT_WS_URL,
    PRODUCTION_REST_URL,
    PRODUCTION_STREAM_URL,
    TESTNET_REST_URL,
    TESTNET_STREAM_URL,
    is_production_url,
)
from algotrade.adapters.redis import SIGNAL_GROUP, SIGNAL_STREAM
from algotrade.apps.cli.exits import checked
from algotrade.apps.common import (
    SourceSpec,
    parse_duration,
    parse_source,
    parse_speed,
    parse_symbols,
)
from algotrade.apps.settings import (
    MONGO_CREDENTIALS,
    REDIS_CREDENTIALS,
    BinanceTradingSettings,
    FeedSettings,
    RedisSettings,
    StrategySettings,
    TradingSettings,
    with_credentials,
)
from algotrade.apps.strategies import DEFAULT as DEFAULT_STRATEGY
from algotrade.apps.strategies import StrategySpec, split_params
from algotrade.domain.bars import Interval
from algotrade.domain.broker import Sizing, SizingKind
from algotrade.domain.errors import ConfigurationError

SourceOpt = Annotated[
    str,
    typer.Option(
        "--source",
        envvar="ALGOTRADE_SOURCE",
        help="Market data: synthetic, replay:PATH (a recorded raw file) or binance.",
    ),
]
SymbolOpt = Annotated[
    list[str],
    typer.Option(
        "--symbol",
        envvar="ALGOTRADE_SYMBOL",
        help="Symbol to collect; repeat it or separate with commas.",
    ),
]
IntervalOpt = Annotated[
    str, typer.Option("--interval", envvar="ALGOTRADE_INTERVAL", help="Bar length: 1s .. 1w.")
]
ShortOpt = Annotated[
    int | None,
    typer.Option("--short", envvar="ALGOTRADE_SHORT",
                 help="Short SMA period, in bars (the SMA crossover's --param short=N; 50)."),
]  # fmt: skip
LongOpt = Annotated[
    int | None,
    typer.Option("--long", envvar="ALGOTRADE_LONG",
                 help="Long SMA period, in bars (the SMA crossover's --param long=N; 200)."),
]  # fmt: skip
StrategyOpt = Annotated[
    str,
    typer.Option(
        "--strategy",
        envvar="ALGOTRADE_STRATEGY",
        help="The strategy: a built-in name (algotrade strategies lists them), an installed "
        "entry point, package.module:Class, or path/to/file.py:Class.",
    ),
]
ParamOpt = Annotated[
    list[str],
    typer.Option(
        "--param",
        envvar="ALGOTRADE_PARAMS",
        help="A strategy parameter, name=value (repeat it; the variable: space-separated).",
    ),
]


def _store_url(url: str) -> str:
    """Put ALGOTRADE_MONGO_USERNAME and _PASSWORD, when set, into a MongoDB store URL."""
    return checked(lambda: with_credentials(url, MONGO_CREDENTIALS))


StoreOpt = Annotated[
    str,
    typer.Option(
        "--store",
        envvar=["ALGOTRADE_STORE", "ALGOTRADE_MONGO_URL"],
        callback=_store_url,
        help="Event store: a SQLite file path, memory, or a MongoDB URL "
        "(mongodb://host:27017/btc_data).",
    ),
]
BinanceWsOpt = Annotated[
    str,
    typer.Option(
        "--binance-ws-url",
        envvar="ALGOTRADE_BINANCE_WS_URL",
        help="Binance WebSocket base URL (a local fake exchange in tests).",
    ),
]
BinanceRestOpt = Annotated[
    str,
    typer.Option(
        "--binance-rest-url", envvar="ALGOTRADE_BINANCE_REST_URL", help="Binance REST base URL."
    ),
]
RetentionOpt = Annotated[
    str,
    typer.Option(
        "--depth-retention",
        envvar="ALGOTRADE_DEPTH_RETENTION",
        help="How long market data is kept after it was stored, e.g. 7d or 12h; 0 keeps it "
        "for ever (MongoDB: a TTL index; SQLite: deleted about once a minute).",
    ),
]
DurationOpt = Annotated[
    str | None,
    typer.Option(
        "--duration",
        envvar="ALGOTRADE_DURATION",
        help="Wall-clock run time: seconds, or with a unit (90s, 10m, 1h). Default: until the "
        "source ends or Ctrl-C.",
    ),
]
SpeedOpt = Annotated[
    str,
    typer.Option(
        "--speed",
        envvar="ALGOTRADE_SPEED",
        help="Pacing of market time: 1 is real time, 10 ten times faster, max unpaced.",
    ),
]
SeedOpt = Annotated[
    int, typer.Option("--seed", envvar="ALGOTRADE_SEED", help="Seed of the synthetic market.")
]
QuantityOpt = Annotated[
    str,
    typer.Option("--quantity", envvar="ALGOTRADE_QUANTITY", help="Base quantity a BUY opens."),
]
FeeOpt = Annotated[
    str,
    typer.Option("--fee", envvar="ALGOTRADE_FEE", help="Paper fee rate (0.001 is 0.1%)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
RedisUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="ALGOTRADE_REDIS_URL",
        help="Carry signals over Redis streams, e.g. redis://localhost:6379/0. Without it, "
        "run uses an in-process bus and processor/trader meet in the store.",
    ),
]
StreamOpt = Annotated[
    str,
    typer.Option("--signal-stream", envvar="ALGOTRADE_SIGNAL_STREAM", help="Signal stream."),
]
GroupOpt = Annotated[
    str, typer.Option("--group", envvar="ALGOTRADE_GROUP", help="Trader consumer group.")
]
ConsumerOpt = Annotated[
    str | None,
    typer.Option(
        "--consumer", envvar="ALGOTRADE_CONSUMER", help="Consumer name (default: host-pid)."
    ),
]
MaxlenOpt = Annotated[
    int,
    typer.Option(
        "--stream-maxlen", envvar="ALGOTRADE_STREAM_MAXLEN", help="Trim the stream to ~N entries."
    ),
]
ClaimIdleOpt = Annotated[
    str,
    typer.Option(
        "--claim-idle",
        envvar="ALGOTRADE_CLAIM_IDLE",
        help="Take over entries another consumer left pending this long (30s).",
    ),
]
MaxDeliveriesOpt = Annotated[
    int,
    typer.Option(
        "--max-deliveries",
        envvar="ALGOTRADE_MAX_DELIVERIES",
        help="Dead-letter an entry delivered more often than this.",
    ),
]
PortOpt = Annotated[
    int | None,
    typer.Option(
        "--port",
        envvar="ALGOTRADE_HTTP_PORT",
        help="Port of /healthcheck, /livez, /readyz and /metrics (collector 8080, processor "
        "8082, trader 8083; 0 picks a free one).",
    ),
]
HostOpt = Annotated[
    str,
    typer.Option("--host", envvar="ALGOTRADE_HTTP_HOST", help="Address the HTTP side binds."),
]
StaleAfterOpt = Annotated[
    str,
    typer.Option(
        "--stale-after",
        envvar="ALGOTRADE_STALE_AFTER",
        help="/readyz fails when no market data arrived for this long.",
    ),
]
MaxLagOpt = Annotated[
    int | None,
    typer.Option(
        "--max-lag",
        envvar="ALGOTRADE_MAX_LAG",
        help="/readyz fails beyond this lag: stored events (processor, 10000) or stream "
        "entries (trader, 1000).",
    ),
]
MaxPendingOpt = Annotated[
    int,
    typer.Option(
        "--max-pending",
        envvar="ALGOTRADE_MAX_PENDING",
        help="/readyz fails beyond this many delivered, unacknowledged entries.",
    ),
]
OutboxAgeOpt = Annotated[
    str,
    typer.Option(
        "--outbox-max-age",
        envvar="ALGOTRADE_OUTBOX_MAX_AGE",
        help="/readyz fails when a stored signal waits longer to be published.",
    ),
]


def option_decimal(name: str, text: str, *, positive: bool = False) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigurationError(name, f"{text!r} is not a decimal number") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise ConfigurationError(name, f"must be {'positive' if positive else 'non-negative'}")
    return value


def strategy_spec(
    strategy: str, params: Sequence[str], short: int | None = None, long: int | None = None
) -> StrategySpec:
    """Find the strategy and check its parameters, before any data is read."""
    return StrategySettings(
        short=short, long=long, name=strategy, params=tuple(split_params(params))
    ).spec()


def strategy_settings(
    interval: str,
    short: int | None,
    long: int | None,
    strategy: str = DEFAULT_STRATEGY,
    params: Sequence[str] = (),
) -> StrategySettings:
    """Return the strategy settings of a service or ``run``, checked (exit 2 when bad)."""
    parsed = Interval.parse(interval)
    settings = StrategySettings(parsed, short, long, strategy, tuple(split_params(params)))
    settings.spec()
    return settings


def feed_settings(
    source: str,
    symbols: list[str],
    speed: str,
    seed: int,
    ws_url: str = DEFAULT_WS_URL,
    rest_url: str = DEFAULT_REST_URL,
) -> FeedSettings:
    spec: SourceSpec = parse_source(source)
    for name, url, schemes in (
        ("binance-ws-url", ws_url, ("ws://", "wss://")),
        ("binance-rest-url", rest_url, ("http://", "https://")),
    ):
        if not url.startswith(schemes):
            raise ConfigurationError(name, f"{url!r} does not start with {' or '.join(schemes)}")
    return FeedSettings(spec, parse_symbols(symbols), parse_speed(speed), seed, ws_url, rest_url)


def checked_rest_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError("binance_rest_url", f"{url!r} does not start with http(s)://")
    return url


def option_duration(duration: str | None) -> float | None:
    return None if duration is None else parse_duration(duration)


def redis_settings(
    url: str | None,
    stream: str = SIGNAL_STREAM,
    group: str = SIGNAL_GROUP,
    consumer: str | None = None,
    maxlen: int = 100_000,
    claim_idle: str = "30s",
    max_deliveries: int = 5,
) -> RedisSettings | None:
    if url is None:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError("redis_url", f"{url!r} is not a redis:// or rediss:// URL")
    url = with_credentials(url, REDIS_CREDENTIALS)
    if maxlen < 1:
        raise ConfigurationError("stream_maxlen", f"must be positive, got {maxlen}")
    if max_deliveries < 1:
        raise ConfigurationError("max_deliveries", f"must be positive, got {max_deliveries}")
    for name, value in (("signal_stream", stream), ("group", group)):
        if not value.strip():
            raise ConfigurationError(name, "must not be empty")
    return RedisSettings(
        url,
        stream=stream,
        group=group,
        consumer=consumer,
        maxlen=maxlen,
        claim_idle=parse_duration(claim_idle, name="claim_idle"),
        max_deliveries=max_deliveries,
    )


def trading_settings(
    quantity: str,
    fee: str,
    *,
    quote_amount: str | None = None,
    balance_fraction: str | None = None,
    max_position: str | None = None,
    limit_offset_bps: str | None = None,
    binance: BinanceTradingSettings | None = None,
) -> TradingSettings:
    sizing = None
    if quote_amount is not None and balance_fraction is not None:
        raise ConfigurationError("quote_amount", "choose it or --balance-fraction, not both")
    if quote_amount is not None:
        sizing = Sizing(
            SizingKind.QUOTE, option_decimal("quote_amount", quote_amount, positive=True)
        )
    if balance_fraction is not None:
        fraction = option_decimal("balance_fraction", balance_fraction, positive=True)
        if fraction > 1:
            raise ConfigurationError("balance_fraction", f"must be at most 1, got {fraction}")
        sizing = Sizing(SizingKind.FRACTION, fraction)
    offset = None
    if limit_offset_bps is not None:
        offset = option_decimal("limit_offset_bps", limit_offset_bps)
        if offset >= 10_000:
            raise ConfigurationError("limit_offset_bps", "must be below 10000 (100 %)")
    return TradingSettings(
        option_decimal("quantity", quantity, positive=True),
        option_decimal("fee", fee),
        sizing=sizing,
        max_position=None
        if max_position is None
        else option_decimal("max_position", max_position, positive=True),
        limit_offset_bps=offset,
        binance=binance,
    )


def binance_trading_settings(
    gateway: str,
    api_key: str | None,
    api_secret: str | None,
    private_key: Path | None,
    rest_url: str | None,
    stream_url: str | None,
    *,
    production: bool,
    reconcile_every: str,
    cancel_after: str | None = None,
) -> BinanceTradingSettings | None:
    if gateway not in ("paper", "binance"):
        raise ConfigurationError("gateway", f"{gateway!r} is not paper or binance")
    if gateway == "paper":
        return None
    if not api_key:
        raise ConfigurationError("binance_api_key", "is required with --gateway binance")
    if not api_secret and private_key is None:
        raise ConfigurationError(
            "binance_api_secret", "is required with --gateway binance (or --binance-private-key)"
        )
    if private_key is not None and not private_key.is_file():
        raise ConfigurationError("binance_private_key", f"{private_key} is not a file")
    rest = rest_url or (PRODUCTION_REST_URL if production else TESTNET_REST_URL)
    stream = stream_url or (PRODUCTION_STREAM_URL if production else TESTNET_STREAM_URL)
    for name, url in (("binance_trading_url", rest), ("binance_user_stream_url", stream)):
        if is_production_url(url) and not production:
            raise ConfigurationError(
                name, f"{url} is Binance's production API (real money): add --production"
            )
    return BinanceTradingSettings(
        api_key,
        api_secret,
        private_key,
        rest,
        stream,
        production,
        reconcile_every=parse_duration(reconcile_every, name="reconcile_every"),
        cancel_after=(parse_duration(cancel_after, name="cancel_after") if cancel_after else None),
    )
