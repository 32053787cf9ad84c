"""The ``algotrade`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Coroutine
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import orjson
import typer
from redis.exceptions import RedisError

from algotrade.adapters.binance.feed import DEFAULT_REST_URL, DEFAULT_WS_URL
from algotrade.adapters.binance.trading import (
    PRODUCTION_REST_URL,
    PRODUCTION_STREAM_URL,
    TESTNET_REST_URL,
    TESTNET_STREAM_URL,
    is_production_url,
)
from algotrade.adapters.redis import SIGNAL_GROUP, SIGNAL_STREAM
from algotrade.apps.common import (
    DEFAULT_STORE,
    SourceSpec,
    open_store,
    parse_duration,
    parse_retention,
    parse_source,
    parse_speed,
    parse_symbols,
    tune_gc,
)
from algotrade.apps.logs import configure_logging, warn
from algotrade.apps.runner import bootstrap_run, run_pipeline
from algotrade.apps.settings import (
    DEFAULT_PORTS,
    MONGO_CREDENTIALS,
    REDIS_CREDENTIALS,
    BinanceTradingSettings,
    CollectorSettings,
    FeedSettings,
    FlowBounds,
    HttpSettings,
    ProcessorSettings,
    RedisSettings,
    RunSettings,
    ServiceSettings,
    StrategySettings,
    TraderSettings,
    TradingSettings,
    with_credentials,
)
from algotrade.domain.bars import Interval
from algotrade.domain.broker import Sizing, SizingKind
from algotrade.domain.errors import AlgotradeError, ConfigurationError, MessagingError, leaves
from algotrade.domain.events import (
    BarClosed,
    BookSnapshotTaken,
    DepthDiffReceived,
    Event,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    OrderUpdated,
    PositionChanged,
    SequenceGapDetected,
    SignalEmitted,
)
from algotrade.domain.strategy import SmaCrossover
from algotrade.domain.streams import depth_stream
from algotrade.services.views import (
    depth_view,
    gap_view,
    iso,
    order_view,
    position_view,
    signal_view,
    trade_view,
)

app = typer.Typer(
    help="Collect market data, run an SMA crossover strategy, and act on its signals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")
E = TypeVar("E", bound=Event)

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
    int, typer.Option("--short", envvar="ALGOTRADE_SHORT", help="Short SMA period, in bars.")
]
LongOpt = Annotated[
    int, typer.Option("--long", envvar="ALGOTRADE_LONG", help="Long SMA period, in bars.")
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


def fail(message: str) -> NoReturn:
    """Print a one-line usage error and exit with status 2."""
    typer.echo(f"algotrade: error: {message}", err=True)
    raise typer.Exit(2)


def checked(build: Callable[[], T]) -> T:
    """Run a settings builder; turn configuration errors, and a file named by an option
    that cannot be used (a name too long, no permission), into exit status 2."""
    try:
        return build()
    except ConfigurationError as e:
        fail(f"{_named(e.name)}: {str(e).split(': ', 1)[1]}")
    except OSError as e:
        fail(f"{str(e.filename)!r}: {e.strerror or e}" if e.filename else str(e))


def _named(name: str) -> str:
    """Return how users set ``name``: ``--option (env var: VARIABLE)``, or the variable."""
    if name.isupper():
        return name  # an environment variable with no option (PYROSCOPE_SERVER_ADDRESS)
    option = f"--{name.replace('_', '-')}"
    envvar = _variables().get(option)
    return f"{option} (env var: {envvar})" if envvar else option


def _variables() -> dict[str, str]:
    """Return each option's environment variable, read from the commands themselves."""
    found: dict[str, str] = {}
    commands = [typer.main.get_command(app)]
    while commands:
        command = commands.pop()
        commands.extend(getattr(command, "commands", {}).values())
        for param in command.params:
            envvar = param.envvar if isinstance(param.envvar, str) else (param.envvar or [""])[0]
            for opt in param.opts if envvar else ():
                found.setdefault(opt, envvar)
    return found


def _decimal(name: str, text: str, *, positive: bool = False) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigurationError(name, f"{text!r} is not a decimal number") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise ConfigurationError(name, f"must be {'positive' if positive else 'non-negative'}")
    return value


def _strategy(interval: str, short: int, long: int) -> StrategySettings:
    parsed = Interval.parse(interval)
    SmaCrossover(short, long)
    return StrategySettings(parsed, short, long)


def _feed(
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


def _rest_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError("binance_rest_url", f"{url!r} does not start with http(s)://")
    return url


def _duration(duration: str | None) -> float | None:
    return None if duration is None else parse_duration(duration)


def _redis(
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


def _trading(
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
        sizing = Sizing(SizingKind.QUOTE, _decimal("quote_amount", quote_amount, positive=True))
    if balance_fraction is not None:
        fraction = _decimal("balance_fraction", balance_fraction, positive=True)
        if fraction > 1:
            raise ConfigurationError("balance_fraction", f"must be at most 1, got {fraction}")
        sizing = Sizing(SizingKind.FRACTION, fraction)
    offset = None
    if limit_offset_bps is not None:
        offset = _decimal("limit_offset_bps", limit_offset_bps)
        if offset >= 10_000:
            raise ConfigurationError("limit_offset_bps", "must be below 10000 (100 %)")
    return TradingSettings(
        _decimal("quantity", quantity, positive=True),
        _decimal("fee", fee),
        sizing=sizing,
        max_position=None
        if max_position is None
        else _decimal("max_position", max_position, positive=True),
        limit_offset_bps=offset,
        binance=binance,
    )


def _binance_trading(
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


def execute(
    main: Callable[[], Coroutine[Any, Any, T]],
    *,
    logs_on_stdout: bool = False,
    latency: bool = False,
) -> T:
    """Run a coroutine; report algotrade errors in one line with exit status 1.

    Services log on stdout (``logs_on_stdout``); commands that print results, or were asked
    for ``--json``, log on stderr. ``latency``: a service signals pass through (see
    :func:`~algotrade.apps.common.tune_gc`).
    """
    configure_logging(sys.stdout if logs_on_stdout else sys.stderr)
    tune_gc(latency=latency)
    try:
        return anyio.run(main)
    except (AlgotradeError, BaseExceptionGroup) as e:
        found = _reportable(e)
        if found is None:
            raise  # a bug: its traceback is what a report needs
        if isinstance(found, ConfigurationError):
            message = str(found).split(": ", 1)[-1]
            typer.echo(f"algotrade: error: {_named(found.name)}: {message}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"algotrade: {found}", err=True)
        raise typer.Exit(1) from None


def _reportable(error: BaseException) -> AlgotradeError | None:
    """Return the algotrade error that ended a run, also from inside task groups (whose
    exception groups hold it beside the cancellations it caused); ``None`` when anything
    else is in the group too (a bug keeps its traceback)."""
    found = list(leaves(error))
    ours = [e for e in found if isinstance(e, AlgotradeError)]
    others = [e for e in found if not isinstance(e, AlgotradeError | asyncio.CancelledError)]
    return ours[0] if ours and not others else None


def print_summary(title: str, figures: dict[str, Any], as_json: bool) -> None:
    """Print a run's figures as a two-column table (``-`` where a figure does not apply,
    as ``published`` without a Redis relay) or as JSON (``null`` there)."""
    if as_json:
        typer.echo(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(title)
    for key, value in figures.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                typer.echo(f"  {key} {sub}:")
                for k, v in subvalue.items() if isinstance(subvalue, dict) else [(sub, subvalue)]:
                    typer.echo(f"    {k:<16} {'-' if v is None else v}")
            continue
        shown = f"{value:,}" if isinstance(value, int) else "-" if value is None else value
        typer.echo(f"  {key:<18} {shown}")


@app.command()
def run(
    source: SourceOpt = "synthetic",
    symbol: SymbolOpt = ["BTCUSDT"],  # noqa: B006 - typer reads the default, never mutates it
    interval: IntervalOpt = "1d",
    short: ShortOpt = 50,
    long: LongOpt = 200,
    store: StoreOpt = DEFAULT_STORE,
    depth_retention: RetentionOpt = "7d",
    duration: DurationOpt = None,
    speed: SpeedOpt = "max",
    seed: SeedOpt = 42,
    binance_ws_url: BinanceWsOpt = DEFAULT_WS_URL,
    binance_rest_url: BinanceRestOpt = DEFAULT_REST_URL,
    quantity: QuantityOpt = "0.01",
    fee: FeeOpt = "0.001",
    redis_url: RedisUrlOpt = None,
    signal_stream: StreamOpt = SIGNAL_STREAM,
    group: GroupOpt = SIGNAL_GROUP,
    as_json: JsonOpt = False,
) -> None:
    """Run collector, processor and trader in one process on the embedded store."""
    settings = checked(
        lambda: RunSettings(
            feed=_feed(source, symbol, speed, seed, binance_ws_url, binance_rest_url),
            strategy=_strategy(interval, short, long),
            trading=_trading(quantity, fee),
            store=store,
            depth_retention=parse_retention(depth_retention),
            duration=_duration(duration),
            redis=_redis(redis_url, signal_stream, group),
        )
    )

    async def main() -> dict[str, Any]:
        pipeline = await bootstrap_run(settings)
        return await run_pipeline(pipeline, settings)

    print_summary("run summary", execute(main, logs_on_stdout=not as_json), as_json)


def _service(
    name: str,
    store: str,
    port: int | None,
    host: str,
    duration: str | None,
    *,
    stale_after: str = "10s",
    max_lag: int | None = None,
    max_pending: int = 1_000,
    outbox_max_age: str = "10s",
) -> ServiceSettings:
    port = DEFAULT_PORTS[name] if port is None else port
    if not 0 <= port <= 65535:
        raise ConfigurationError("port", f"must be 0..65535, got {port}")
    if not host.strip():
        raise ConfigurationError("host", "must not be empty")
    lag = max_lag if max_lag is not None else (1_000 if name == "trader" else 10_000)
    for option, value in (("max_lag", lag), ("max_pending", max_pending)):
        if value < 1:
            raise ConfigurationError(option, f"must be positive, got {value}")
    return ServiceSettings(
        store=store,
        http=HttpSettings(host=host, port=port),
        bounds=FlowBounds(
            stale_after=parse_duration(stale_after, name="stale_after"),
            max_lag=lag,
            max_pending=max_pending,
            outbox_max_age=parse_duration(outbox_max_age, name="outbox_max_age"),
        ),
        duration=_duration(duration),
        shutdown_grace=_grace(),
    )


def _grace() -> float:
    """Read ``ALGOTRADE_SHUTDOWN_GRACE`` (a duration; 30s by default)."""
    text = os.environ.get("ALGOTRADE_SHUTDOWN_GRACE", "30s")
    return parse_duration(text, name="ALGOTRADE_SHUTDOWN_GRACE")


@app.command()
def collector(
    source: SourceOpt = "binance",
    symbol: SymbolOpt = ["BTCUSDT"],  # noqa: B006 - typer reads the default, never mutates it
    store: StoreOpt = DEFAULT_STORE,
    depth_retention: RetentionOpt = "7d",
    duration: DurationOpt = None,
    speed: SpeedOpt = "max",
    seed: SeedOpt = 42,
    binance_ws_url: BinanceWsOpt = DEFAULT_WS_URL,
    binance_rest_url: BinanceRestOpt = DEFAULT_REST_URL,
    port: PortOpt = None,
    host: HostOpt = "0.0.0.0",
    stale_after: StaleAfterOpt = "10s",
    flush_interval: Annotated[
        str,
        typer.Option(
            "--flush-interval",
            envvar="ALGOTRADE_FLUSH_INTERVAL",
            help="Longest wait before received market events are stored (batches also go at "
            "2,000 events): lower is fresher data, higher is fewer writes.",
        ),
    ] = "50ms",
    as_json: JsonOpt = False,
) -> None:
    """Collect market data into the store; a replay ends (status 0) with its file.

    Serves /healthcheck, /livez, /readyz and /metrics on --port (8080) while it runs.
    """
    settings = checked(
        lambda: CollectorSettings(
            feed=_feed(source, symbol, speed, seed, binance_ws_url, binance_rest_url),
            service=_service("collector", store, port, host, duration, stale_after=stale_after),
            depth_retention=parse_retention(depth_retention),
            flush_interval=parse_duration(flush_interval, name="flush_interval"),
        )
    )
    from algotrade.apps.services import run_collector  # the HTTP stack: services only

    summary = execute(lambda: run_collector(settings), logs_on_stdout=not as_json)
    print_summary("collector summary", summary, as_json)


@app.command()
def processor(
    interval: IntervalOpt = "1d",
    short: ShortOpt = 50,
    long: LongOpt = 200,
    store: StoreOpt = DEFAULT_STORE,
    redis_url: RedisUrlOpt = None,
    signal_stream: StreamOpt = SIGNAL_STREAM,
    stream_maxlen: MaxlenOpt = 100_000,
    port: PortOpt = None,
    host: HostOpt = "0.0.0.0",
    max_lag: MaxLagOpt = None,
    outbox_max_age: OutboxAgeOpt = "10s",
    duration: DurationOpt = None,
    warmup: Annotated[
        bool,
        typer.Option(
            "--warmup/--no-warmup",
            envvar="ALGOTRADE_WARMUP",
            help="Fill the SMAs from Binance klines (GET /api/v3/klines on --binance-rest-url) "
            "before the first bar, so signals are meaningful from the first day.",
        ),
    ] = True,
    binance_rest_url: BinanceRestOpt = DEFAULT_REST_URL,
    as_json: JsonOpt = False,
) -> None:
    """Follow stored market events, close bars and store SMA crossover signals.

    With --redis-url, every stored signal is also published to the signal stream. Serves
    /healthcheck, /livez, /readyz and /metrics on --port (8082) while it runs.
    """
    settings = checked(
        lambda: ProcessorSettings(
            strategy=_strategy(interval, short, long),
            service=_service(
                "processor", store, port, host, duration, max_lag=max_lag,
                outbox_max_age=outbox_max_age,
            ),
            redis=_redis(redis_url, signal_stream, maxlen=stream_maxlen),
            warmup_url=_rest_url(binance_rest_url) if warmup else None,
        )
    )  # fmt: skip
    from algotrade.apps.services import run_processor  # the HTTP stack: services only

    summary = execute(lambda: run_processor(settings), logs_on_stdout=not as_json, latency=True)
    print_summary("processor summary", summary, as_json)


@app.command()
def trader(
    store: StoreOpt = DEFAULT_STORE,
    quantity: QuantityOpt = "0.01",
    fee: FeeOpt = "0.001",
    redis_url: RedisUrlOpt = None,
    signal_stream: StreamOpt = SIGNAL_STREAM,
    group: GroupOpt = SIGNAL_GROUP,
    consumer: ConsumerOpt = None,
    claim_idle: ClaimIdleOpt = "30s",
    max_deliveries: MaxDeliveriesOpt = 5,
    port: PortOpt = None,
    host: HostOpt = "0.0.0.0",
    max_lag: MaxLagOpt = None,
    max_pending: MaxPendingOpt = 1_000,
    duration: DurationOpt = None,
    as_json: JsonOpt = False,
    gateway: Annotated[
        str,
        typer.Option(
            "--gateway",
            envvar="ALGOTRADE_GATEWAY",
            help="Where orders go: paper (the default) or binance.",
        ),
    ] = "paper",
    quote_amount: Annotated[
        str | None,
        typer.Option(
            "--quote-amount",
            envvar="ALGOTRADE_QUOTE_AMOUNT",
            help="Size each BUY as this quote amount (100 = 100 USDT) at the "
            "signal's price, instead of --quantity.",
        ),
    ] = None,
    balance_fraction: Annotated[
        str | None,
        typer.Option(
            "--balance-fraction",
            envvar="ALGOTRADE_BALANCE_FRACTION",
            help="Size each BUY as this fraction (0-1] of the free quote balance.",
        ),
    ] = None,
    max_position: Annotated[
        str | None,
        typer.Option(
            "--max-position",
            envvar="ALGOTRADE_MAX_POSITION",
            help="Largest position to hold, in base units; a BUY beyond it is rejected.",
        ),
    ] = None,
    limit_offset_bps: Annotated[
        str | None,
        typer.Option(
            "--limit-offset-bps",
            envvar="ALGOTRADE_LIMIT_OFFSET_BPS",
            help="Send limit orders this many basis points better than the "
            "signal's price instead of market orders.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--binance-api-key",
            envvar="ALGOTRADE_BINANCE_API_KEY",
            help="Binance API key (--gateway binance).",
            show_default=False,
        ),
    ] = None,
    api_secret: Annotated[
        str | None,
        typer.Option(
            "--binance-api-secret",
            envvar="ALGOTRADE_BINANCE_API_SECRET",
            help="Binance HMAC secret (never logged).",
            show_default=False,
        ),
    ] = None,
    private_key: Annotated[
        Path | None,
        typer.Option(
            "--binance-private-key",
            envvar="ALGOTRADE_BINANCE_PRIVATE_KEY",
            help="Ed25519 private key (PEM file) to sign with instead of the secret.",
        ),
    ] = None,
    trading_url: Annotated[
        str | None,
        typer.Option(
            "--binance-trading-url",
            envvar="ALGOTRADE_BINANCE_TRADING_URL",
            help="Binance REST base URL for orders (default: the Spot Testnet, "
            "https://testnet.binance.vision).",
        ),
    ] = None,
    user_stream_url: Annotated[
        str | None,
        typer.Option(
            "--binance-user-stream-url",
            envvar="ALGOTRADE_BINANCE_USER_STREAM_URL",
            help="Binance WebSocket API URL, where the user data stream is (default: the "
            "Spot Testnet's, wss://ws-api.testnet.binance.vision/ws-api/v3).",
        ),
    ] = None,
    production: Annotated[
        bool,
        typer.Option(
            "--production",
            envvar="ALGOTRADE_BINANCE_PRODUCTION",
            help="Trade on Binance's production API: real money.",
        ),
    ] = False,
    reconcile_every: Annotated[
        str,
        typer.Option(
            "--reconcile-every",
            envvar="ALGOTRADE_RECONCILE_EVERY",
            help="How often working orders are checked against the exchange.",
        ),
    ] = "60s",
    cancel_after: Annotated[
        str | None,
        typer.Option(
            "--cancel-after",
            envvar="ALGOTRADE_CANCEL_AFTER",
            help="Cancel a limit order still working after this long (e.g. 5m), so the "
            "next signal on its symbol can trade (default: never; a working order blocks "
            "new orders on its symbol).",
        ),
    ] = None,
    halt: Annotated[
        bool,
        typer.Option(
            "--halt",
            help="Set the kill switch: every trader on --store stops "
            "placing orders (their signals are stored rejected), then exit.",
        ),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Clear the kill switch, then exit.")
    ] = False,
    reason: Annotated[
        str, typer.Option("--reason", help="Why the kill switch is set or cleared.")
    ] = "",
) -> None:
    """Place one order for each signal: from the Redis group, or following the store.

    Orders go to the paper broker, or to Binance with --gateway binance (the Spot Testnet
    unless --production). Serves /healthcheck, /livez, /readyz and /metrics on --port
    (8083) while it runs. --halt / --resume set or clear the kill switch and exit.
    """
    if halt or resume:
        if halt and resume:
            fail("--halt and --resume: choose one")
        from algotrade.apps.services import run_kill_switch

        summary = execute(lambda: run_kill_switch(store, halt=halt, reason=reason or "manual"))
        print_summary("kill switch", summary, as_json)
        return
    settings = checked(
        lambda: TraderSettings(
            trading=_trading(
                quantity, fee, quote_amount=quote_amount, balance_fraction=balance_fraction,
                max_position=max_position, limit_offset_bps=limit_offset_bps,
                binance=_binance_trading(
                    gateway, api_key, api_secret, private_key, trading_url, user_stream_url,
                    production=production, reconcile_every=reconcile_every,
                    cancel_after=cancel_after,
                ),
            ),
            service=_service(
                "trader", store, port, host, duration, max_lag=max_lag, max_pending=max_pending
            ),
            redis=_redis(
                redis_url, signal_stream, group, consumer, claim_idle=claim_idle,
                max_deliveries=max_deliveries,
            ),
        )
    )  # fmt: skip
    from algotrade.apps.services import run_trader  # the HTTP stack: services only

    summary = execute(lambda: run_trader(settings), logs_on_stdout=not as_json, latency=True)
    print_summary("trader summary", summary, as_json)


signals_app = typer.Typer(help="Stored signals, and the live signal stream.")
app.add_typer(signals_app, name="signals")


async def _read_all(store: str, kind: type[E]) -> list[E]:
    db = open_store(store, patient=False, existing="store")
    try:
        out: list[E] = []
        after = 0
        while batch := await db.read_all(after, limit=1000, types=(kind,)):
            out.extend(s.event for s in batch if isinstance(s.event, kind))
            after = batch[-1].position
        return out
    finally:
        await db.close()


DEPTH_TYPES = (DepthDiffReceived, BookSnapshotTaken)
LISTING_PAGE = 2000  # events a listing reads at a time (and all it keeps in memory)


def _line(row: dict[str, Any] | None, columns: list[tuple[str, int]]) -> str:
    """Return one line of a table: ``row``'s cells, or the heading when ``row`` is None."""
    if row is None:
        return " ".join(f"{name:<{width}}" for name, width in columns).rstrip()
    cells = ("" if row.get(name) is None else str(row[name]) for name, _ in columns)
    return " ".join(f"{c:<{w}}" for c, (_, w) in zip(cells, columns, strict=True)).rstrip()


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, int]], noun: str) -> None:
    typer.echo(_line(None, columns))
    for row in rows:
        typer.echo(_line(row, columns))
    typer.echo(f"{len(rows)} {noun}")


@signals_app.callback(invoke_without_command=True)
def signals(ctx: typer.Context, store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False) -> None:
    """List the stored signals, oldest first."""
    if ctx.invoked_subcommand is not None:
        return
    rows = [signal_view(s) for s in execute(lambda: _read_all(store, SignalEmitted))]
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for r in rows:
        r["short_sma"] = f"{r['short_sma']:.4f}"
        r["long_sma"] = f"{r['long_sma']:.4f}"
    _table(
        rows,
        [("bar_time", 25), ("symbol", 9), ("side", 4), ("price", 14), ("short_sma", 14),
         ("long_sma", 14), ("id", 36)],
        "signal(s)",
    )  # fmt: skip


@signals_app.command("tail")
def signals_tail(
    redis_url: Annotated[
        str, typer.Option("--redis-url", envvar="ALGOTRADE_REDIS_URL", help="Redis URL.")
    ] = "redis://localhost:6379/0",
    signal_stream: StreamOpt = SIGNAL_STREAM,
    from_start: Annotated[bool, typer.Option("--from-start", help="Show older entries.")] = False,
    count: Annotated[int | None, typer.Option("--count", help="Stop after N entries.")] = None,
) -> None:
    """Follow the signal stream live, one JSON line per entry (Ctrl-C to stop)."""
    redis = checked(lambda: _redis(redis_url, signal_stream))
    assert redis is not None

    async def main() -> None:
        client = redis.client()
        # From the newest entry's id, once Redis answers; not "$", which read again after a
        # timeout or an outage would skip what was added in between.
        last: str | None = "0-0" if from_start else None
        seen = 0
        backoff, answered = 0.1, False  # a server never reached is an error, an outage not
        try:
            while count is None or seen < count:
                try:
                    if last is None:
                        newest: Any = await client.xrevrange(redis.stream, count=1)
                        last = str(newest[0][0]) if newest else "0-0"
                    response: Any = await client.xread({redis.stream: last}, count=100, block=1000)
                except RedisError as e:
                    if not answered:
                        raise MessagingError(f"cannot read {redis.stream!r}: {e}") from e
                    warn("signals", "signal stream unavailable, retrying", stream=redis.stream,
                         error=e, retry_in=backoff)  # fmt: skip
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff, answered = 0.1, True
                for _, entries in response or ():
                    for entry_id, fields in entries:
                        last = str(entry_id)
                        line = {str(k): str(v) for k, v in fields.items()}
                        typer.echo(orjson.dumps({"entry": last, **line}).decode())
                        seen += 1
                        if count is not None and seen >= count:
                            return
        finally:
            await client.aclose()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a tail ends
        execute(main)


@app.command()
def orders(store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False) -> None:
    """List the orders the trader stored, with their latest state."""

    async def main() -> list[dict[str, Any]]:
        placed = await _read_all(store, OrderPlaced)
        outcomes: dict[str, OrderFilled | OrderRejected | OrderUpdated] = {}
        found: list[OrderFilled | OrderRejected | OrderUpdated] = [
            *await _read_all(store, OrderFilled),
            *await _read_all(store, OrderRejected),
            *await _read_all(store, OrderUpdated),
        ]
        for outcome in sorted(found, key=lambda e: e.version):  # the latest state wins
            outcomes[outcome.order_id] = outcome
        return [order_view(p, outcomes.get(p.order_id)) for p in placed]

    rows = execute(main)
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    _table(
        rows,
        [("time", 25), ("symbol", 9), ("side", 4), ("quantity", 10), ("price", 14),
         ("status", 8), ("reason", 28), ("id", 36)],
        "order(s)",
    )  # fmt: skip


@app.command()
def positions(store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False) -> None:
    """Show each symbol's position: quantity, average price, realised PnL and fees."""

    async def main() -> list[dict[str, Any]]:
        latest: dict[str, PositionChanged] = {}
        for change in await _read_all(store, PositionChanged):
            latest[change.symbol] = change
        return [position_view(p) for p in latest.values()]

    rows = execute(main)
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    _table(
        rows,
        [("symbol", 9), ("quantity", 12), ("average_price", 16), ("realised_pnl", 16),
         ("fees_paid", 14), ("updated_at", 25)],
        "position(s)",
    )  # fmt: skip


@app.command()
def record(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="File to append the raw frames and REST answers to (gzip when it ends in .gz).",
        ),
    ],
    symbol: SymbolOpt = ["BTCUSDT"],  # noqa: B006 - typer reads the default, never mutates it
    duration: DurationOpt = None,
    binance_ws_url: BinanceWsOpt = DEFAULT_WS_URL,
    binance_rest_url: BinanceRestOpt = DEFAULT_REST_URL,
    as_json: JsonOpt = False,
) -> None:
    """Record live Binance frames and snapshots in the replay format (--source replay:FILE)."""
    feed = checked(lambda: _feed("binance", symbol, "max", 0, binance_ws_url, binance_rest_url))
    seconds = checked(lambda: _duration(duration))
    checked(lambda: _record_target(out))
    from algotrade.apps.services import run_record

    summary = execute(lambda: run_record(feed, out, seconds), logs_on_stdout=not as_json)
    print_summary("record summary", summary, as_json)


def _fail(name: str, message: str) -> NoReturn:
    raise ConfigurationError(name, message)


def _record_target(out: Path) -> None:
    """Refuse a recording file that could not be written, before connecting."""
    try:
        if out.is_dir():
            _fail("out", f"{str(out)!r} is a directory")
        if not out.parent.is_dir():
            _fail("out", f"the directory of {str(out)!r} does not exist")
    except OSError as e:
        _fail("out", f"{str(out)!r} cannot be written: {e.strerror}")


@app.command()
def depth(
    symbol: Annotated[str, typer.Option("--symbol", help="The symbol to list.")] = "BTCUSDT",
    store: StoreOpt = DEFAULT_STORE,
    as_json: JsonOpt = False,
) -> None:
    """List a symbol's stored depth events (snapshots and diffs) in order, with top of book."""
    name = checked(lambda: parse_symbols([symbol])[0])
    stream = depth_stream(name)
    columns = [("kind", 9), ("first_update_id", 16), ("final_update_id", 16),
               ("event_time", 25), ("best_bid", 28), ("best_ask", 28)]  # fmt: skip

    def text(row: dict[str, Any]) -> str:
        if as_json:
            return orjson.dumps(row).decode()
        for side in ("best_bid", "best_ask"):
            row[side] = "" if row[side] is None else "@".join(reversed(row[side]))
        return _line(row, columns)

    async def main() -> int:
        # Page by page, written as read: a week of depth is millions of events, and the
        # listing keeps one page in memory, not the whole stream.
        db = open_store(store, patient=False, existing="store")
        count, after = 0, 0
        symbols: set[str] = set()  # those with depth, named when the asked one has none
        typer.echo("[" if as_json else _line(None, columns), nl=not as_json)
        try:
            while page := await db.read_all(after, limit=LISTING_PAGE, types=DEPTH_TYPES):
                after = page[-1].position
                if not count:
                    symbols.update(s.event.symbol for s in page if isinstance(s.event, DEPTH_TYPES))
                rows = [
                    text(depth_view(s.event))
                    for s in page
                    if s.event.stream == stream and isinstance(s.event, DEPTH_TYPES)
                ]
                if rows:
                    separator = "," if as_json else "\n"
                    lead = "," if as_json and count else ""
                    typer.echo(lead + separator.join(rows), nl=not as_json)
                    count += len(rows)
        finally:
            await db.close()
        if not count:
            held = ", ".join(sorted(symbols)) or "none"
            typer.echo(f"no depth events for {name}; symbols with depth: {held}", err=True)
        return count

    count = execute(main)
    typer.echo("]" if as_json else f"{count} depth event(s)")


@app.command()
def gaps(store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False) -> None:
    """List the stored sequence gaps (each followed by a resync of its symbol)."""
    rows = [gap_view(g) for g in execute(lambda: _read_all(store, SequenceGapDetected))]
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    _table(
        rows,
        [("symbol", 9), ("reason", 15), ("expected_update_id", 19), ("received_update_id", 19),
         ("missing", 9), ("detected_at", 25)],
        "gap(s)",
    )  # fmt: skip


DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="History: a kline CSV file (Binance's layout), a recorded raw session "
        "(algotrade record), or an event store URL (mongodb://..., sqlite:///file.db).",
    ),
]
SyntheticOpt = Annotated[
    bool, typer.Option("--synthetic", help="A seeded synthetic market instead of --data.")
]
BarsOpt = Annotated[int, typer.Option("--bars", help="Bars of the synthetic market.")]
BacktestIntervalOpt = Annotated[
    str | None,
    typer.Option(
        "--interval",
        help="Bar length (1s .. 1w). Candles: their own by default, a multiple resamples them; "
        "recordings and stores: 1m by default; synthetic: 1d.",
    ),
]
BacktestSymbolOpt = Annotated[
    str | None,
    typer.Option("--symbol", help="The symbol to test (default: the data's first)."),
]
CashOpt = Annotated[str, typer.Option("--initial-cash", help="Quote currency at the start.")]
BuyQuantityOpt = Annotated[
    str | None,
    typer.Option("--quantity", help="Fixed base quantity per BUY (default: all the cash)."),
]
PriceSourceOpt = Annotated[
    str, typer.Option("--price-source", help="Bars of market data from mid or trade prices.")
]


def _history(
    data: str | None,
    synthetic: bool,
    bars: int,
    symbol: str | None,
    interval: str | None,
    seed: int,
) -> Any:
    from algotrade.apps.backtesting import load_history, market_events, synthetic_history

    if (data is None) == (not synthetic):
        raise ConfigurationError("data", "give either --data PATH or --synthetic")
    if synthetic:
        if bars < 1:
            raise ConfigurationError("bars", f"must be positive, got {bars}")
        return synthetic_history(bars, interval=interval or "1d", symbol=symbol or "BTCUSDT",
                                 seed=seed)  # fmt: skip
    assert data is not None
    wanted = Interval.parse(interval) if interval else None
    events = market_events(data, symbol=symbol, interval=wanted)  # read as the backtest runs
    return events if events is not None else load_history(data, symbol=symbol, interval=interval)


def _report_rejects(history: Any) -> None:
    for reject in history.rejected[:20]:
        typer.echo(f"algotrade: skipped {reject.where} of {reject.source}: {reject.reason}",
                   err=True)  # fmt: skip
    if len(history.rejected) > 20:
        typer.echo(f"algotrade: ... {len(history.rejected) - 20} more rows skipped", err=True)
    if history.other_symbols:
        others = ", ".join(sorted(history.other_symbols))
        typer.echo(f"algotrade: testing {history.symbol}; also in the data: {others} "
                   "(choose with --symbol)", err=True)  # fmt: skip


def _price_source(text: str) -> Any:
    if text not in ("mid", "trade"):
        raise ConfigurationError("price_source", f"{text!r} is not mid or trade")
    return text


def _run_backtest(history: Any, short: int, long: int, fee: str, cash: str,
                  quantity: str | None, price_source: str, progress: bool) -> Any:  # fmt: skip
    from algotrade.adapters.memory import SystemClock
    from algotrade.apps.backtesting import MarketEvents, backtest
    from algotrade.apps.common import Progress, rate

    strategy = SmaCrossover(short, long)
    fee_rate = _decimal("fee", fee)
    initial = _decimal("initial_cash", cash, positive=True)
    fixed = None if quantity is None else _decimal("quantity", quantity, positive=True)
    source = _price_source(price_source)
    streamed = isinstance(history, MarketEvents)  # read as the run goes
    total = 0 if streamed else len(history.items)
    if not progress or (not streamed and total < 200_000):
        return backtest(strategy, history, fee=fee_rate, initial_cash=initial, quantity=fixed,
                        price_source=source)  # fmt: skip
    done = [0]
    noun = "events" if streamed or history.kind == "events" else "bars"

    def render(elapsed: float) -> str:
        if streamed:  # how many there are is known at the end
            return f"[backtest] {done[0]:,} {noun} of {history.symbol} {rate(done[0], elapsed)}"
        share = done[0] / total if total else 1.0
        bar = "#" * int(share * 30)
        return (f"[backtest] [{bar:<30}] {done[0]:,}/{total:,} {noun} {share:6.1%} "
                f"{rate(done[0], elapsed)}")  # fmt: skip

    meter = Progress(render, SystemClock())
    last = [0.0]

    def on_progress(count: int, _: int) -> None:
        done[0] = count
        now = meter.clock.monotonic()
        if now - last[0] >= meter.period or count == total:
            last[0] = now
            meter.show()

    try:
        result = backtest(strategy, history, fee=fee_rate, initial_cash=initial, quantity=fixed,
                          price_source=source, on_progress=on_progress)  # fmt: skip
        if streamed:
            meter.show()  # the final count, known only now
        return result
    finally:
        meter.finish()


@app.command()
def backtest(
    data: DataOpt = None,
    synthetic: SyntheticOpt = False,
    bars: BarsOpt = 5000,
    symbol: BacktestSymbolOpt = None,
    interval: BacktestIntervalOpt = None,
    short: ShortOpt = 50,
    long: LongOpt = 200,
    fee: FeeOpt = "0.001",
    initial_cash: CashOpt = "10000",
    quantity: BuyQuantityOpt = None,
    price_source: PriceSourceOpt = "mid",
    seed: SeedOpt = 42,
    as_json: JsonOpt = False,
) -> None:
    """Backtest the SMA crossover on history, through the live processor's code path."""
    configure_logging(sys.stderr)
    history = checked(lambda: _history(data, synthetic, bars, symbol, interval, seed))
    result = checked(
        lambda: _run_backtest(
            history,
            short,
            long,
            fee,
            initial_cash,
            quantity,
            price_source,
            progress=sys.stderr.isatty() or not as_json,
        )
    )
    _report_rejects(history)  # after the run: a recording's bad lines are known once read
    if as_json:
        body = {
            "signals": [signal_view(s) for s in result.signals],
            "trades": [trade_view(t) for t in result.trades],
            "metrics": result.metrics(),
        }
        typer.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    metrics = result.metrics()
    metrics["params"] = ", ".join(f"{k}={v}" for k, v in result.params)
    for key in ("total_return", "max_drawdown", "win_rate"):
        if metrics[key] is not None:
            metrics[key] = f"{metrics[key]:.2%}"
    if result.closed_bars:
        metrics["first_bar"] = iso(result.closed_bars[0].open_time)
        metrics["last_bar"] = iso(result.closed_bars[-1].open_time)
    print_summary(f"backtest of {history.source}", metrics, as_json=False)


@app.command()
def parity(
    data: Annotated[str, typer.Option("--data", help="A recorded raw session to replay.")],
    symbol: BacktestSymbolOpt = None,
    interval: IntervalOpt = "1m",
    short: ShortOpt = 50,
    long: LongOpt = 200,
    price_source: PriceSourceOpt = "mid",
) -> None:
    """Prove the live path and backtest agree: same signals, same ids, or exit 1."""
    from algotrade.apps.backtesting import parity as compare

    configure_logging(sys.stderr, level="warning")
    checked(lambda: SmaCrossover(short, long))
    source = checked(lambda: _price_source(price_source))
    result = checked(
        lambda: compare(
            data,
            lambda: SmaCrossover(short, long),
            interval=interval,
            symbol=symbol,
            price_source=source,
        )
    )
    typer.echo(f"parity of {data} ({result.symbol}, {interval}, SMA {short}/{long}, "
               f"{result.events:,} market events, {result.seconds:.1f}s)")  # fmt: skip
    typer.echo(f"  live path (collector, store, processor follow, outbox): "
               f"{len(result.live)} signals")  # fmt: skip
    typer.echo(f"  backtest:                                           {len(result.backtest)} "
               "signals")  # fmt: skip
    if result.identical:
        typer.echo("  identical: every signal, id and field alike")
        return
    typer.echo("  DIFFERENT:", err=True)
    for line in result.differences():
        typer.echo(f"    {line}", err=True)
    raise typer.Exit(1)


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="report.html or report.png.")],
    data: DataOpt = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Report the stored live bars, signals and orders instead."),
    ] = None,
    synthetic: SyntheticOpt = False,
    bars: BarsOpt = 5000,
    symbol: BacktestSymbolOpt = None,
    interval: BacktestIntervalOpt = None,
    short: ShortOpt = 50,
    long: LongOpt = 200,
    fee: FeeOpt = "0.001",
    initial_cash: CashOpt = "10000",
    quantity: BuyQuantityOpt = None,
    seed: SeedOpt = 42,
) -> None:
    """Chart price, both SMAs, the BUY/SELL markers and the equity curve into HTML or PNG."""
    from algotrade.apps.report import from_backtest, write_report

    configure_logging(sys.stderr)
    if out.suffix.lower() not in (".html", ".htm", ".png"):
        checked(lambda: _fail("out", f"{out.name}: a report is .html or .png"))
    if store is not None:
        if data is not None or synthetic:
            checked(lambda: _fail("store", "give --store, or --data / --synthetic, not both"))
        cash = checked(lambda: _decimal("initial_cash", initial_cash, positive=True))
        drawn = execute(lambda: _live_report(store, symbol or "BTCUSDT", interval or "1d",
                                             short, long, cash))  # fmt: skip
    else:
        history = checked(lambda: _history(data, synthetic, bars, symbol, interval, seed))
        result = checked(
            lambda: _run_backtest(
                history, short, long, fee, initial_cash, quantity, "mid", progress=True
            )
        )
        _report_rejects(history)
        drawn = from_backtest(result)
    path = checked(lambda: write_report(drawn, out))
    typer.echo(f"wrote {path} ({len(drawn.times):,} bars, {len(drawn.markers)} signals)")


async def _live_report(
    store: str, symbol: str, interval: str, short: int, long: int, cash: Decimal
) -> Any:
    from algotrade.apps.report import from_live
    from algotrade.domain.processing import signal_stream
    from algotrade.domain.streams import bar_stream

    bars_interval = Interval.parse(interval)
    name = parse_symbols([symbol])[0]
    strategy = SmaCrossover(short, long)
    db = open_store(store, patient=False, existing="store")
    try:
        stored_bars = await db.read_stream(bar_stream(name, bars_interval.name))
        stored_signals = await db.read_stream(signal_stream(name, bars_interval.name, strategy))
        closed = [b for b in stored_bars if isinstance(b, BarClosed)]
        if not closed:
            # Say which intervals are there (the first bars stored tell): `make run`
            # stores 10s bars, and the report's default is 1d.
            first = await db.read_all(0, limit=5000, types=(BarClosed,))
            names = {e.interval for s in first if isinstance(e := s.event, BarClosed)
                     and e.symbol == name}  # fmt: skip
            found = sorted(names, key=lambda i: Interval.parse(i).nanos)
            hint = f" (stored: {', '.join(found)}; choose with --interval)" if found else ""
            raise ConfigurationError(
                "store", f"no stored {bars_interval.name} bars of {name}{hint}: run the "
                "processor with that --interval, or report a backtest with --data"
            )  # fmt: skip
    finally:
        await db.close()
    signals = [s for s in stored_signals if isinstance(s, SignalEmitted)]
    ids = {s.signal_id for s in signals}
    fills = [f for f in await _read_all(store, OrderFilled) if f.signal_id in ids]
    return from_live(closed, signals, fills, initial_cash=cash, params=dict(strategy.params),
                     title=f"{name} {bars_interval.name} sma_crossover(short={short}, "
                     f"long={long}): live, from {store}")  # fmt: skip


@app.command()
def health(
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            envvar="ALGOTRADE_HTTP_PORT",
            help="The service's port (default: the first of 8080, 8082, 8083 that answers).",
        ),
    ] = None,
    path: Annotated[
        str, typer.Option("--path", help="/healthcheck, /readyz or /livez.")
    ] = "/healthcheck",
    host: Annotated[str, typer.Option("--host", help="Where the service runs.")] = "127.0.0.1",
) -> None:
    """Ask a running service for its health; exit 0 when UP, 1 when not (container checks)."""
    import httpx

    ports = [port] if port is not None else sorted(DEFAULT_PORTS.values())
    for candidate in ports:
        try:
            response = httpx.get(f"http://{host}:{candidate}{path}", timeout=5.0)
        except httpx.HTTPError as e:
            if candidate == ports[-1]:
                typer.echo(f"algotrade: no answer from {host}:{candidate}{path}: {e}", err=True)
            continue
        typer.echo(response.text)
        raise typer.Exit(0 if response.status_code == 200 else 1)
    raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``algotrade`` console script."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during shutdown
        sys.exit(130)
