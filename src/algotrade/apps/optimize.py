"""Parameter search: one strategy over one history, many parameter sets, in parallel.

``--param name=RANGE`` gives each searched parameter its values: ``5..100:5`` (from 5 to
100 in steps of 5, both ends included), ``a,b,c`` (a list), or one value. ``--constraint``
keeps the sets that satisfy comparisons of parameters and numbers joined by ``and``
(``short < long``, ``fast * 2 <= slow`` is not supported: names and numbers only). The
objective is a backtest figure (``sharpe``, ``total_return``, ``final_equity``,
``win_rate`` are maximised; ``max_drawdown`` is minimised). ``grid`` tries every set,
``random`` a seeded sample of ``trials`` of them, ``bayes`` ``trials`` sets chosen one
batch at a time by Optuna's TPE sampler from the results so far (seeded). Every set is a
full backtest through the live processor's code path, run on all cores (one process each,
the history shared).
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import operator
import random
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from algotrade.apps.strategies import StrategySpec, convert, load_class, parameters, resolve
from algotrade.domain.errors import ConfigurationError

MAXIMISED = ("sharpe", "total_return", "final_equity", "win_rate", "round_trips")
MINIMISED = ("max_drawdown",)
_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*(?::\s*([\d.]+))?\s*$")
_COMPARE = re.compile(
    r"^\s*([A-Za-z_]\w*|-?[\d.]+)\s*(<=|>=|==|!=|<|>)\s*([A-Za-z_]\w*|-?[\d.]+)\s*$"
)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
_MAX_SETS = 1_000_000
#: Sets a bayes search asks for between two looks at the results.
BAYES_BATCH = 8


def values_of(name: str, text: str) -> list[str]:
    """Return the values ``text`` gives a parameter: a range ``a..b[:step]``, a list
    ``a,b,c`` or one value (as texts, converted later to the parameter's type).

    Raises:
        ConfigurationError: a range that is not one, or empty.
    """
    match = _RANGE.match(text)
    if match is None and ".." in text:
        raise ConfigurationError("param", f"{name}={text!r} is not a range a..b:step")
    if match is None:
        out = [v.strip() for v in text.split(",")]
        if not all(out):
            raise ConfigurationError("param", f"{name}={text!r} has an empty value")
        return out
    try:
        start, stop = Decimal(match[1]), Decimal(match[2])
        step = Decimal(match[3]) if match[3] else Decimal(1)
    except InvalidOperation:
        raise ConfigurationError("param", f"{name}={text!r} is not a range a..b:step") from None
    if step <= 0 or stop < start:
        raise ConfigurationError(
            "param", f"{name}={text!r}: a range needs start <= stop and a positive step"
        )
    count = int((stop - start) / step) + 1
    if count > _MAX_SETS:
        raise ConfigurationError("param", f"{name}={text!r} gives {count:,} values")
    return [_text(start + i * step) for i in range(count)]


def _text(value: Decimal) -> str:
    return str(value.quantize(Decimal(1))) if value == value.to_integral_value() else str(value)


@dataclass(frozen=True, slots=True)
class Constraint:
    """Comparisons of parameters (and numbers) that every searched set must satisfy."""

    text: str
    comparisons: tuple[tuple[str, str, str], ...]

    @classmethod
    def parse(cls, text: str | None) -> Constraint:
        """Parse ``a < b and c >= 3`` (empty: no constraint).

        Raises:
            ConfigurationError: a part that is not a comparison.
        """
        if not text or not text.strip():
            return cls("", ())
        parts = []
        for part in re.split(r"\band\b", text):
            match = _COMPARE.match(part)
            if match is None:
                raise ConfigurationError(
                    "constraint", f"{part.strip()!r} is not a comparison like short < long"
                )
            parts.append((match[1], match[2], match[3]))
        return cls(text.strip(), tuple(parts))

    def names(self) -> set[str]:
        """Return the parameter names the constraint reads."""
        return {x for a, _, b in self.comparisons for x in (a, b) if not _is_number(x)}

    def holds(self, values: dict[str, Any]) -> bool:
        """Return whether the parameter values satisfy every comparison."""
        for left, op, right in self.comparisons:
            a = Decimal(left) if _is_number(left) else values[left]
            b = Decimal(right) if _is_number(right) else values[right]
            if not _OPS[op](_number(a), _number(b)):
                return False
        return True


def _is_number(token: str) -> bool:
    return bool(re.fullmatch(r"-?[\d.]+", token))


def _number(value: Any) -> Any:
    return Decimal(str(value)) if isinstance(value, int | float | Decimal) else value


@dataclass(frozen=True, slots=True)
class Search:
    """What to search: a strategy, the values of each searched parameter, the fixed ones,
    a constraint, an objective and how to sample."""

    strategy: str
    ranges: tuple[tuple[str, tuple[str, ...]], ...]
    constraint: Constraint
    objective: str
    method: str = "grid"
    trials: int = 100
    seed: int = 1

    def __post_init__(self) -> None:
        if self.objective not in (*MAXIMISED, *MINIMISED):
            known = ", ".join((*MAXIMISED, *MINIMISED))
            raise ConfigurationError("objective", f"{self.objective!r} is none of {known}")
        if self.method not in ("grid", "random", "bayes"):
            raise ConfigurationError("search", f"{self.method!r} is not grid, random or bayes")
        if self.trials < 1:
            raise ConfigurationError("trials", f"must be positive, got {self.trials}")
        unknown = self.constraint.names() - {name for name, _ in self.ranges}
        if unknown:
            raise ConfigurationError(
                "constraint", f"names {', '.join(sorted(unknown))}, which no --param gives"
            )

    def candidates(self) -> Iterator[StrategySpec]:
        """Yield the parameter sets to try, checked and converted, satisfying the constraint
        (grid: in order; random: a seeded sample without repeats)."""
        names = [name for name, _ in self.ranges]
        product: Sequence[tuple[str, ...]] = list(itertools.product(*(v for _, v in self.ranges)))
        if len(product) > _MAX_SETS:
            raise ConfigurationError("param", f"{len(product):,} sets to search: too many")
        if self.method == "random" and self.trials < len(product):
            product = random.Random(self.seed).sample(product, self.trials)
        types = {p.name: p.type for p in parameters(load_class(self.strategy))}
        for combination in product:
            given = list(zip(names, combination, strict=True))
            typed = {k: convert(k, v, types.get(k, str)) for k, v in given}
            if self.constraint.holds(typed):  # before building: a set it excludes may not build
                yield resolve(self.strategy, given)

    def better(self, a: float | None, b: float | None) -> bool:
        """Return whether objective value ``a`` beats ``b`` (``None``: no value, the worst)."""
        if a is None or (isinstance(a, float) and math.isnan(a)):
            return False
        if b is None:
            return True
        return a < b if self.objective in MINIMISED else a > b


@dataclass(frozen=True, slots=True)
class Trial:
    """One parameter set's backtest figures."""

    params: tuple[tuple[str, Any], ...]
    metrics: dict[str, Any]


_HISTORY: Any = None
_OPTIONS: dict[str, Any] = {}


def _evaluate(spec: StrategySpec) -> Trial:
    from algotrade.apps.backtesting import backtest

    result = backtest(spec.build(), _HISTORY, **_OPTIONS)
    return Trial(spec.params, result.metrics())


def run_search(
    search: Search,
    history: Any,
    *,
    jobs: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> list[Trial]:
    """Backtest every candidate of ``search`` on ``history`` (``options``: the backtest's
    fee, cash, quantity), ``jobs`` processes at once (all cores by default); return the
    trials best first by the objective.

    Raises:
        ConfigurationError: the search has no candidate (the constraint excludes them all).
    """
    global _HISTORY, _OPTIONS
    if search.method == "bayes":
        optuna = require_optuna()  # before anything is run: a missing package is a setup error
        if next(search.candidates(), None) is None:
            raise ConfigurationError("constraint", "excludes every parameter set searched")
        _HISTORY, _OPTIONS = history, options
        try:
            with _pool(jobs, BAYES_BATCH) as (_, evaluate):
                return ranked(_bayes(optuna, search, evaluate, on_progress), search)
        finally:
            _HISTORY, _OPTIONS = None, {}
    candidates = list(search.candidates())
    if not candidates:
        raise ConfigurationError("constraint", "excludes every parameter set searched")
    _HISTORY, _OPTIONS = history, options
    trials: list[Trial] = []
    try:
        with _pool(jobs, len(candidates)) as (_, evaluate):
            for trial in evaluate(candidates):
                trials.append(trial)
                if on_progress is not None:
                    on_progress(len(trials), len(candidates))
    finally:
        _HISTORY, _OPTIONS = None, {}
    return ranked(trials, search)


Evaluate = Callable[[list[StrategySpec]], Iterator[Trial]]


@contextmanager
def _pool(jobs: int | None, most: int) -> Iterator[tuple[int, Evaluate]]:
    """Yield the number of workers and a function that backtests sets on them, in order
    (one process: here; more: forked workers, which inherit the loaded history)."""
    workers = max(1, min(jobs or multiprocessing.cpu_count(), most))
    if workers == 1:
        yield 1, lambda specs: map(_evaluate, specs)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield workers, lambda specs: pool.map(_evaluate, specs, chunksize=1)


def require_optuna() -> Any:
    """Return the ``optuna`` module, quiet but for warnings.

    Raises:
        ConfigurationError: it is not installed (the ``optimize`` extra).
    """
    try:
        import optuna
    except ImportError:
        raise ConfigurationError(
            "search", "bayes needs Optuna: pip install 'algotrade[optimize]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _bayes(
    optuna: Any,
    search: Search,
    evaluate: Evaluate,
    on_progress: Callable[[int, int], None] | None,
) -> list[Trial]:
    """Ask Optuna's TPE sampler for :data:`BAYES_BATCH` sets at a time, backtest them at
    once on the workers, tell it the objective; ``search.trials`` distinct sets in all
    (fewer when there are fewer). The batch does not depend on the number of workers, so
    a seed gives the same sets on any machine.

    Each parameter is suggested as the index of one of its values (in the order its range
    gives them), so a range keeps its order; a set the constraint excludes is pruned and
    not counted; a set asked again is told its result without a second backtest.
    """
    from optuna.trial import TrialState

    direction = "minimize" if search.objective in MINIMISED else "maximize"
    sampler = optuna.samplers.TPESampler(seed=search.seed)
    study = optuna.create_study(direction=direction, sampler=sampler)
    names = [name for name, _ in search.ranges]
    values = dict(search.ranges)
    types = {p.name: p.type for p in parameters(load_class(search.strategy))}
    seen: dict[tuple[tuple[str, str], ...], Trial] = {}
    size = math.prod(len(v) for v in values.values())
    asked = 0
    while len(seen) < min(search.trials, size) and asked < 20 * search.trials:
        batch = []
        for _ in range(min(BAYES_BATCH, search.trials - len(seen))):
            asked += 1
            trial = study.ask()
            given = tuple((n, values[n][trial.suggest_int(n, 0, len(values[n]) - 1)])
                          for n in names)  # fmt: skip
            if not search.constraint.holds({k: convert(k, v, types.get(k, str)) for k, v in given}):
                study.tell(trial, state=TrialState.PRUNED)
            else:
                batch.append((trial, given))
        fresh = list(dict.fromkeys(g for _, g in batch if g not in seen))
        specs = [resolve(search.strategy, list(g)) for g in fresh]
        for given, result in zip(fresh, evaluate(specs), strict=True):
            seen[given] = result
        for trial, given in batch:
            value = seen[given].metrics.get(search.objective)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, float(value))
        if on_progress is not None:
            on_progress(len(seen), min(search.trials, size))
    return list(seen.values())


def ranked(trials: list[Trial], search: Search) -> list[Trial]:
    """Return the trials best first (those without a value last, in the order tried)."""
    scored: list[Trial] = []
    rest: list[Trial] = []
    for trial in trials:
        valued = search.better(trial.metrics.get(search.objective), None)
        (scored if valued else rest).append(trial)
    sign = 1 if search.objective in MINIMISED else -1
    scored.sort(key=lambda t: sign * float(t.metrics[search.objective]))
    return scored + rest
