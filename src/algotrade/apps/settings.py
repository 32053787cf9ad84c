"""One frozen, typed settings object per command, built once by the CLI from options and
environment variables and validated there (a bad value exits with status 2 naming the
option and its variable). Secrets (URL passwords) are never shown: see ``__repr__``.

Settings hold values only: the adapters they name are built by
:mod:`algotrade.apps.wiring`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

from algotrade.adapters.binance.endpoints import (
    DEFAULT_REST_URL,
    DEFAULT_WS_URL,
    TESTNET_REST_URL,
    TESTNET_STREAM_URL,
)
from algotrade.adapters.redis import (
    DEAD_LETTER_STREAM,
    SIGNAL_GROUP,
    SIGNAL_STREAM,
)
from algotrade.apps.common import DEFAULT_STORE, SourceSpec, parse_duration
from algotrade.apps.strategies import DEFAULT as DEFAULT_STRATEGY
from algotrade.apps.strategies import StrategySpec, resolve
from algotrade.domain.bars import Interval
from algotrade.domain.broker import Sizing
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.processing import Processor

DEFAULT_PORTS = {"collector": 8080, "processor": 8082, "trader": 8083}

#: Credentials given apart from the store's and Redis's URL (the compose stack does, from
#: .env): ``(scheme prefixes, user variable, password variable)``.
MONGO_CREDENTIALS = (("mongodb://", "mongodb+srv://"), "ALGOTRADE_MONGO_USERNAME",
                     "ALGOTRADE_MONGO_PASSWORD")  # fmt: skip
REDIS_CREDENTIALS = (("redis://", "rediss://"), "ALGOTRADE_REDIS_USERNAME",
                     "ALGOTRADE_REDIS_PASSWORD")  # fmt: skip


#: The variables read apart from the commands' options (those the CLI declares with
#: each option, ``algotrade <command> --help`` shows them), with what they set.
OTHER_VARIABLES = {
    "ALGOTRADE_MONGO_USERNAME": "MongoDB user, percent-encoded into the store URL",
    "ALGOTRADE_MONGO_PASSWORD": "MongoDB password, percent-encoded into the store URL",
    "ALGOTRADE_REDIS_USERNAME": "Redis user (ACL), percent-encoded into the Redis URL",
    "ALGOTRADE_REDIS_PASSWORD": "Redis password, percent-encoded into the Redis URL",
    "ALGOTRADE_SHUTDOWN_GRACE": "how long a stopping service may drain (30s)",
    "ALGOTRADE_SPEEDUPS": "0 turns the compiled parser and book off (read by "
    "algotrade.adapters.speedups when it is imported: the one variable read elsewhere)",
}
#: Variables of the test harness and of the compose file, which the commands ignore.
HARNESS_VARIABLES = frozenset({
    "ALGOTRADE_TEST_MONGO_URL", "ALGOTRADE_TEST_REDIS_URL", "ALGOTRADE_CHAOS_SEED",
    "ALGOTRADE_CHAOS_SECONDS", "ALGOTRADE_SCALE_SYMBOLS", "ALGOTRADE_CPUS", "ALGOTRADE_MEMORY",
    "ALGOTRADE_VERSION",
})  # fmt: skip


def unknown_variables(options: Iterable[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """Return the ``ALGOTRADE_*`` variables set in ``environ`` that nothing reads: neither
    an option's (``options``), nor one of :data:`OTHER_VARIABLES` or the harness's (a
    misspelt ``ALGOTRADE_STROE`` would otherwise be ignored without a word)."""
    known = {*options, *OTHER_VARIABLES, *HARNESS_VARIABLES}
    return sorted(n for n in environ if n.startswith("ALGOTRADE_") and n not in known)


def data_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """Return where downloaded market data is kept: ``ALGOTRADE_DATA_DIR`` (which the
    ``download`` command's ``--data-dir`` reads too), else ``$XDG_DATA_HOME/algotrade``
    (``~/.local/share/algotrade``)."""
    given = environ.get("ALGOTRADE_DATA_DIR")
    if given:
        return Path(given).expanduser()
    home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(home) / "algotrade"


def shutdown_grace(environ: Mapping[str, str] = os.environ) -> float:
    """Return ``ALGOTRADE_SHUTDOWN_GRACE`` in seconds (a duration; 30s by default)."""
    text = environ.get("ALGOTRADE_SHUTDOWN_GRACE", "30s")
    return parse_duration(text, name="ALGOTRADE_SHUTDOWN_GRACE")


def with_credentials(
    url: str,
    credentials: tuple[tuple[str, ...], str, str],
    environ: Mapping[str, str] = os.environ,
) -> str:
    """Return ``url`` with the user and password of ``credentials``' variables in it,
    percent-encoded (a password may hold ``@``, ``:``, ``/``, ``%``, ...).

    ``url`` is returned as it is when neither variable is set or it is not of the
    credentials' schemes (a SQLite path). A URL that holds credentials already is a
    :class:`ConfigurationError` naming the password variable: one place only.
    """
    schemes, user_var, password_var = credentials
    user, password = environ.get(user_var, ""), environ.get(password_var, "")
    if not (user or password) or not url.startswith(schemes):
        return url
    scheme, rest = url.split("://", 1)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if "@" in rest[:end]:
        raise ConfigurationError(
            password_var, "set, but the URL holds credentials already: keep them in one place"
        )
    userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"{scheme}://{userinfo}@{rest}"


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """Where market data comes from and how fast it plays."""

    source: SourceSpec
    symbols: tuple[str, ...] = ("BTCUSDT",)
    speed: float = math.inf
    seed: int = 42
    binance_ws_url: str = DEFAULT_WS_URL
    binance_rest_url: str = DEFAULT_REST_URL


@dataclass(frozen=True, slots=True)
class StrategySettings:
    """The strategy a command runs: its name (``--strategy``), its parameters as given
    (``--param name=value``; ``short``/``long``: the SMA crossover's ``--short``/``--long``),
    and the bar interval."""

    interval: Interval = field(default_factory=lambda: Interval.parse("1d"))
    short: int | None = None
    long: int | None = None
    name: str = DEFAULT_STRATEGY
    params: tuple[tuple[str, str], ...] = ()

    def all_params(self) -> tuple[tuple[str, str], ...]:
        """Return the parameters, the ``short``/``long`` shorthand included."""
        shorthand = tuple((k, str(v)) for k, v in (("short", self.short), ("long", self.long))
                          if v is not None)  # fmt: skip
        return (*shorthand, *self.params)

    def spec(self) -> StrategySpec:
        """Find the strategy and check its parameters (see :mod:`algotrade.apps.strategies`).

        Raises:
            ConfigurationError: unknown strategy, bad parameters, not a strategy.
        """
        return resolve(self.name, self.all_params())

    def processor(self) -> Processor:
        """Return a fresh pure processor running this strategy on each symbol."""
        return Processor(self.interval, self.spec().factory())


@dataclass(frozen=True, slots=True)
class BinanceTradingSettings:
    """Where and as whom the trader trades on Binance (``--gateway binance``).

    The URLs default to the Spot Testnet; production URLs need ``production``.
    """

    api_key: str = field(repr=False)
    api_secret: str | None = field(default=None, repr=False)
    private_key: Path | None = None
    """An Ed25519 private key (PEM) to sign with instead of the HMAC secret."""
    rest_url: str = TESTNET_REST_URL
    stream_url: str = TESTNET_STREAM_URL
    production: bool = False
    recv_window_ms: int = 5000
    reconcile_every: float = 60.0
    cancel_after: float | None = None
    """Seconds after which a working order is cancelled (``None``: never)."""


@dataclass(frozen=True, slots=True)
class TradingSettings:
    """Order size, limits and the gateway that executes the orders."""

    quantity: Decimal = Decimal("0.01")
    fee: Decimal = Decimal("0.001")
    sizing: Sizing | None = None
    """How a BUY is sized; ``None``: ``quantity``."""
    max_position: Decimal | None = None
    limit_offset_bps: Decimal | None = None
    """``None``: market orders; else limit orders this far from the signal's price."""
    binance: BinanceTradingSettings | None = None
    """``None``: the paper broker."""


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where signals travel when a Redis URL is given, and how the trader group behaves."""

    url: str = field(repr=False)  # may hold a password
    stream: str = SIGNAL_STREAM
    group: str = SIGNAL_GROUP
    consumer: str | None = None
    maxlen: int = 100_000
    claim_idle: float = 30.0
    max_deliveries: int = 5
    dead_letters: str = DEAD_LETTER_STREAM


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Settings of ``algotrade run``."""

    feed: FeedSettings
    strategy: StrategySettings = field(default_factory=StrategySettings)
    trading: TradingSettings = field(default_factory=TradingSettings)
    store: str = field(default=DEFAULT_STORE, repr=False)  # may hold a password
    depth_retention: float = 7 * 86400.0
    duration: float | None = None
    progress: bool = True
    redis: RedisSettings | None = None


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Where a service serves its health and metrics, and how often it probes."""

    host: str = "0.0.0.0"
    port: int = 8080
    probe_interval: float = 2.0


@dataclass(frozen=True, slots=True)
class FlowBounds:
    """When ``/readyz`` says data no longer flows."""

    stale_after: float = 10.0
    """Collector: seconds without market data."""
    max_lag: int = 10_000
    """Processor: stored events not yet processed; trader: stream entries not yet read."""
    max_pending: int = 1_000
    """Trader: entries delivered and not yet acknowledged."""
    outbox_max_age: float = 10.0
    """Processor: seconds a stored signal may wait to be published."""


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """What every service has: its store, HTTP side, readiness bounds and run time."""

    store: str = field(default=DEFAULT_STORE, repr=False)  # may hold a password
    http: HttpSettings = field(default_factory=HttpSettings)
    bounds: FlowBounds = field(default_factory=FlowBounds)
    duration: float | None = None
    shutdown_grace: float = 30.0
    """Seconds a stopping service may take to drain; past them it exits with status 1."""


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """Settings of ``algotrade collector``."""

    feed: FeedSettings
    service: ServiceSettings = field(default_factory=ServiceSettings)
    depth_retention: float = 7 * 86400.0
    flush_interval: float = 0.05
    """Seconds market events may wait to be stored (a batch also goes at 2,000 events)."""


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    """Settings of ``algotrade processor``."""

    strategy: StrategySettings = field(default_factory=StrategySettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    redis: RedisSettings | None = None
    warmup_url: str | None = None
    """Binance REST base URL to fetch warm-up klines from; ``None``: no warm-up."""


@dataclass(frozen=True, slots=True)
class TraderSettings:
    """Settings of ``algotrade trader``."""

    trading: TradingSettings = field(default_factory=TradingSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    redis: RedisSettings | None = None
