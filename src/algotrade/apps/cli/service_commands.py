"""The long-running commands: ``run``, the three services, ``record`` and ``health``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from algotrade.adapters.binance.endpoints import DEFAULT_REST_URL, DEFAULT_WS_URL
from algotrade.adapters.redis import SIGNAL_GROUP, SIGNAL_STREAM
from algotrade.apps.cli.app import app
from algotrade.apps.cli.exits import checked, execute, fail, option_error, print_summary
from algotrade.apps.cli.options import (
    BinanceRestOpt,
    BinanceWsOpt,
    ClaimIdleOpt,
    ConsumerOpt,
    DurationOpt,
    FeeOpt,
    GroupOpt,
    HostOpt,
    IntervalOpt,
    JsonOpt,
    LongOpt,
    MaxDeliveriesOpt,
    MaxLagOpt,
    MaxlenOpt,
    MaxPendingOpt,
    OutboxAgeOpt,
    ParamOpt,
    PortOpt,
    QuantityOpt,
    RedisUrlOpt,
    RetentionOpt,
    SeedOpt,
    ShortOpt,
    SourceOpt,
    SpeedOpt,
    StaleAfterOpt,
    StoreOpt,
    StrategyOpt,
    StreamOpt,
    SymbolOpt,
    binance_trading_settings,
    checked_rest_url,
    feed_settings,
    option_duration,
    redis_settings,
    strategy_settings,
    trading_settings,
)
from algotrade.apps.common import (
    DEFAULT_STORE,
    parse_duration,
    parse_retention,
)
from algotrade.apps.settings import (
    DEFAULT_PORTS,
    CollectorSettings,
    FlowBounds,
    HttpSettings,
    ProcessorSettings,
    RunSettings,
    ServiceSettings,
    TraderSettings,
    shutdown_grace,
)
from algotrade.apps.strategies import DEFAULT as DEFAULT_STRATEGY
from algotrade.domain.errors import ConfigurationError


@app.command()
def run(
    source: SourceOpt = "synthetic",
    symbol: SymbolOpt = ["BTCUSDT"],  # noqa: B006 - typer reads the default, never mutates it
    interval: IntervalOpt = "1d",
    strategy: StrategyOpt = DEFAULT_STRATEGY,
    param: ParamOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    short: ShortOpt = None,
    long: LongOpt = None,
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
    from algotrade.apps.bootstrap import bootstrap_run
    from algotrade.apps.runner import run_pipeline

    settings = checked(
        lambda: RunSettings(
            feed=feed_settings(source, symbol, speed, seed, binance_ws_url, binance_rest_url),
            strategy=strategy_settings(interval, short, long, strategy, param),
            trading=trading_settings(quantity, fee),
            store=store,
            depth_retention=parse_retention(depth_retention),
            duration=option_duration(duration),
            redis=redis_settings(redis_url, signal_stream, group),
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
        duration=option_duration(duration),
        shutdown_grace=shutdown_grace(),
    )


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
            help="Longest wait before received market events are stored (below it, batches "
            "adapt to the rate: four times a write's recent duration, from 1 ms; they also "
            "go at 2,000 events): lower is fresher data under load, higher is fewer writes.",
        ),
    ] = "50ms",
    as_json: JsonOpt = False,
) -> None:
    """Collect market data into the store; a replay ends (status 0) with its file.

    Serves /healthcheck, /livez, /readyz and /metrics on --port (8080) while it runs.
    """
    settings = checked(
        lambda: CollectorSettings(
            feed=feed_settings(source, symbol, speed, seed, binance_ws_url, binance_rest_url),
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
    strategy: StrategyOpt = DEFAULT_STRATEGY,
    param: ParamOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    short: ShortOpt = None,
    long: LongOpt = None,
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
    """Follow stored market events, close bars and store the strategy's signals (--strategy).

    With --redis-url, every stored signal is also published to the signal stream. Serves
    /healthcheck, /livez, /readyz and /metrics on --port (8082) while it runs.
    """
    settings = checked(
        lambda: ProcessorSettings(
            strategy=strategy_settings(interval, short, long, strategy, param),
            service=_service(
                "processor", store, port, host, duration, max_lag=max_lag,
                outbox_max_age=outbox_max_age,
            ),
            redis=redis_settings(redis_url, signal_stream, maxlen=stream_maxlen),
            warmup_url=checked_rest_url(binance_rest_url) if warmup else None,
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
            trading=trading_settings(
                quantity, fee, quote_amount=quote_amount, balance_fraction=balance_fraction,
                max_position=max_position, limit_offset_bps=limit_offset_bps,
                binance=binance_trading_settings(
                    gateway, api_key, api_secret, private_key, trading_url, user_stream_url,
                    production=production, reconcile_every=reconcile_every,
                    cancel_after=cancel_after,
                ),
            ),
            service=_service(
                "trader", store, port, host, duration, max_lag=max_lag, max_pending=max_pending
            ),
            redis=redis_settings(
                redis_url, signal_stream, group, consumer, claim_idle=claim_idle,
                max_deliveries=max_deliveries,
            ),
        )
    )  # fmt: skip
    from algotrade.apps.services import run_trader  # the HTTP stack: services only

    summary = execute(lambda: run_trader(settings), logs_on_stdout=not as_json, latency=True)
    print_summary("trader summary", summary, as_json)


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
    feed = checked(
        lambda: feed_settings("binance", symbol, "max", 0, binance_ws_url, binance_rest_url)
    )
    seconds = checked(lambda: option_duration(duration))
    checked(lambda: _record_target(out))
    from algotrade.apps.recording import run_record

    summary = execute(lambda: run_record(feed, out, seconds), logs_on_stdout=not as_json)
    print_summary("record summary", summary, as_json)


def _record_target(out: Path) -> None:
    """Refuse a recording file that could not be written, before connecting."""
    try:
        if out.is_dir():
            option_error("out", f"{str(out)!r} is a directory")
        if not out.parent.is_dir():
            option_error("out", f"the directory of {str(out)!r} does not exist")
    except OSError as e:
        option_error("out", f"{str(out)!r} cannot be written: {e.strerror}")


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
