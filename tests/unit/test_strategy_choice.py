"""Any strategy, by name, in every command: built in, installed, a module's or a file's
class, its parameters converted to their annotated types, every mistake a clear exit 2."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from typer.testing import CliRunner

from algotrade.adapters import codec
from algotrade.adapters.mongo import documents
from algotrade.adapters.redis.codec import signal_from_fields, signal_to_fields
from algotrade.apps import strategies
from algotrade.apps.cli import app
from algotrade.apps.logs import configure_logging
from algotrade.apps.strategies import resolve
from algotrade.domain.bars import Interval
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import SignalEmitted
from algotrade.domain.processing import SymbolPipeline, signal_stream
from algotrade.domain.strategy import SmaCrossover
from algotrade.domain.values import Side
from tests.support import strategies as examples
from tests.support.builders import bar

FILE = Path(examples.__file__)
MODULE = "tests.support.strategies"


def test_the_default_is_the_sma_crossover_with_its_shorthand() -> None:
    """``sma_crossover`` is built in; ``short``/``long`` reach its constructor as ints."""
    spec = resolve("sma_crossover", [("short", "3"), ("long", "8")])
    made = spec.build()
    assert isinstance(made, SmaCrossover)
    assert made.params == (("short", 3), ("long", 8))
    assert spec.describe() == "sma_crossover(short=3, long=8)"


@pytest.mark.parametrize("name", [f"{MODULE}:Breakout", f"{FILE}:Breakout", "breakout"])
def test_a_module_a_file_or_an_entry_point_names_a_strategy(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module's class, a file's class and an installed entry point are found alike, with
    every parameter converted to its annotated type."""
    installed = EntryPoint("breakout", f"{MODULE}:Breakout", strategies.ENTRY_POINT_GROUP)
    monkeypatch.setattr(strategies, "entry_points", lambda group: [installed])
    given = [("window", "30"), ("margin", "0.0001"), ("ratio", "0.5"), ("mode", "high"),
             ("long_only", "no")]  # fmt: skip
    made = resolve(name, given).build()
    assert type(made).__name__ == "Breakout"
    assert made.params == (("window", 30), ("margin", Decimal("0.0001")), ("ratio", 0.5),
                           ("mode", "high"), ("long_only", False))  # fmt: skip


@pytest.mark.parametrize(
    ("name", "params", "says"),
    [
        ("nope", [], "unknown strategy 'nope' (known: bollinger_breakout, ema_crossover, rsi"),
        ("no_such_module:X", [], "cannot import no_such_module"),
        (f"{MODULE}:Missing", [], "has no 'Missing'"),
        ("missing/file.py:X", [], "no file 'missing/file.py'"),
        (f"{MODULE}:annotations", [], "is not a class"),
        (f"{MODULE}:NotAStrategy", [], "it lacks an on_bar(bar) method"),
        (f"{MODULE}:Breakout", [("windw", "3")], "has no parameter 'windw' (it takes: window,"),
        (f"{MODULE}:NeedsWindow", [], "needs window (--param NAME=VALUE)"),
        (f"{MODULE}:Breakout", [("window", "x")], "window='x' is not int"),
        (f"{MODULE}:Breakout", [("margin", "NaN")], "margin='NaN' is not Decimal"),
        (f"{MODULE}:Breakout", [("ratio", "inf")], "ratio='inf' is not float"),
        (f"{MODULE}:Breakout", [("long_only", "maybe")], "long_only='maybe' is not bool"),
        (f"{MODULE}:Breakout", [("window", "1")], "refused its parameters: window must be"),
        ("sma_crossover", [("short", "9"), ("long", "3")], "must be less than long"),
    ],
)
def test_every_mistake_is_a_configuration_error_naming_it(
    name: str, params: list[tuple[str, str]], says: str
) -> None:
    """An unknown strategy, module, class or file, a class that is no strategy, an unknown,
    missing or mistyped parameter, or one the strategy refuses: a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=None) as raised:
        resolve(name, params)
    assert says in str(raised.value)


def test_parameters_of_every_type_reach_the_signal_its_id_and_each_store() -> None:
    """A signal carries a strategy's parameters of any type (a Decimal as its text) and its
    indicator values, the parameters make its stream and id, and SQLite's, MongoDB's and
    Redis's codecs keep both exactly."""
    strategy = resolve(f"{MODULE}:Breakout", [("window", "2"), ("margin", "0.0001")]).build()
    pipeline = SymbolPipeline("BTCUSDT", Interval.parse("1m"), strategy)
    closes = ["10", "10", "12", "8"]
    signals = [s for i, c in enumerate(closes) if (s := pipeline.on_bar(bar(c, i)))]
    assert [s.side for s in signals] == [Side.BUY, Side.SELL]
    signal = signals[0]
    assert signal.params == (("window", 2), ("margin", "0.0001"), ("ratio", 1.0),
                             ("mode", "close"), ("long_only", True))  # fmt: skip
    assert signal.stream == signal_stream("BTCUSDT", "1m", strategy)
    assert signal.stream == "signals-BTCUSDT-1m-breakout-2-0.0001-1.0-close-True"
    assert signal.indicators == (("high", 10.0),)  # the values the strategy named
    other = SymbolPipeline("BTCUSDT", Interval.parse("1m"),
                           resolve(f"{MODULE}:Breakout", [("window", "2")]).build())  # fmt: skip
    again = [s for i, c in enumerate(closes) if (s := other.on_bar(bar(c, i)))]
    assert again[0].signal_id != signal.signal_id  # another margin: another signal
    name, doc = codec.type_name(SignalEmitted), codec.to_dict(signal)
    assert codec.from_dict(name, signal.stream, signal.version, doc) == signal
    assert documents.from_document(documents.to_document(signal, 1)) == signal
    entry: dict[bytes | str, bytes | str] = dict(signal_to_fields(signal).items())
    assert signal_from_fields(entry) == signal


def test_strategies_lists_what_can_be_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """`algotrade strategies` lists the built-in and installed ones with their parameters."""
    installed = EntryPoint("breakout", f"{MODULE}:Breakout", strategies.ENTRY_POINT_GROUP)
    monkeypatch.setattr(strategies, "entry_points", lambda group: [installed])
    listed = CliRunner().invoke(app, ["strategies"])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("sma_crossover  (built in)  BUY when the short SMA crosses")
    assert "    short: int = 50" in lines
    assert f"breakout  (installed: {MODULE}:Breakout)" in listed.stdout
    assert "    margin: Decimal = Decimal('0')" in lines


@pytest.mark.parametrize("command", ["backtest", "parity", "report"])
def test_a_bad_strategy_exits_2_before_any_data_is_read(command: str, tmp_path: Path) -> None:
    """A research command given a bad parameter exits 2 naming it, before opening its data
    (which does not exist here)."""
    args = [command, "--data", str(tmp_path / "absent.raw"), "--strategy", f"{FILE}:Breakout",
            "--param", "window=x"]  # fmt: skip
    if command == "report":
        args += ["--out", str(tmp_path / "r.html")]
    try:
        done = CliRunner().invoke(app, args)
    finally:
        configure_logging(sys.stderr)  # a command logs into the runner's stream, closed after
    assert done.exit_code == 2
    assert "--param (env var: ALGOTRADE_PARAMS): window='x' is not int" in done.stderr


def test_the_documented_example_strategy_runs_as_the_docs_say() -> None:
    """The repository's strategies/breakout.py backtests from the command line, and its
    misspelt parameter gives the very line docs/strategies.md shows."""
    root = Path(__file__).resolve().parents[2]
    name = "strategies/breakout.py:Breakout"
    docs = (root / "docs" / "strategies.md").read_text(encoding="utf-8")
    try:
        given = ["backtest", "--synthetic", "--strategy", str(root / name)]
        wrong = CliRunner().invoke(app, [*given, "--param", "windw=30"])
        ran = CliRunner().invoke(app, [*given, "--bars", "3000", "--json", "--param", "window=30"])
    finally:
        configure_logging(sys.stderr)  # a command logs into the runner's stream, closed after
    assert wrong.exit_code == 2
    said = wrong.stderr.strip().replace(str(root / name), name)
    assert said in docs
    assert ran.exit_code == 0, ran.output
    body = json.loads(ran.stdout)
    assert body["metrics"]["signals"] > 0
    assert {s["strategy"] for s in body["signals"]} == {"breakout"}
    assert body["signals"][0]["params"] == {"window": 30, "margin": "0"}


def test_an_indicator_that_is_no_number_is_refused_when_the_signal_is_made() -> None:
    """A strategy naming a NaN indicator fails at its first signal, naming it (JSON, the
    stores' and the stream's format, holds no NaN)."""
    from algotrade.domain.errors import InvalidInputError
    from algotrade.domain.strategy import Decision

    class Broken:
        name, params = "broken", ()

        def on_bar(self, bar: object) -> Decision:
            return Decision(Side.BUY, 1.0, 2.0, {"rsi": float("nan")})

    pipeline = SymbolPipeline("BTCUSDT", Interval.parse("1m"), Broken())
    with pytest.raises(InvalidInputError, match="indicator 'rsi' is not a finite number"):
        pipeline.on_bar(bar("10", 0))


def test_a_strategy_file_runs_once_however_often_it_is_named() -> None:
    """Resolving a file's strategy again (a search does, once per set) reuses the loaded
    module: the same class, the file not run twice."""
    first = resolve(f"{FILE}:Breakout", [("window", "5")])
    again = resolve(f"{FILE}:Breakout", [("window", "6")])
    assert first.cls is again.cls
