"""Strategies by name, for every command: built in, installed, in a module, or in a file.

``--strategy NAME`` names one of:

* a built-in strategy (``sma_crossover``, the default);
* an installed entry point of the group ``algotrade.strategies`` (a package declares
  ``[project.entry-points."algotrade.strategies"] mine = "mypackage.strategies:Mine"``);
* ``package.module:Class``, importable from the current directory or the path;
* ``path/to/file.py:Class``, a file loaded as a module of its own.

Parameters come as ``name=value`` texts (``--param fast=12``), converted to the types of the
class's constructor annotations (``int``, ``float``, ``Decimal``, ``str``, ``bool``). An
unknown strategy, an unknown, missing or mistyped parameter, or a class whose objects are
not strategies is a :class:`~algotrade.domain.errors.ConfigurationError` naming it, raised
before any data is read (the commands exit with status 2).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from algotrade.domain.errors import ConfigurationError
from algotrade.domain.strategy import (
    BollingerBreakout,
    EmaCrossover,
    RsiReversion,
    SmaCrossover,
    Strategy,
)

ENTRY_POINT_GROUP = "algotrade.strategies"
DEFAULT = "sma_crossover"
BUILT_IN: dict[str, type[Any]] = {
    cls.name: cls for cls in (SmaCrossover, EmaCrossover, RsiReversion, BollingerBreakout)
}
_TYPES: dict[Any, str] = {int: "int", float: "float", Decimal: "Decimal", str: "str",
                          bool: "bool"}  # fmt: skip
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter of a strategy's constructor: its name, type and default."""

    name: str
    type: Any
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        """Return whether the parameter has no default."""
        return self.default is inspect.Parameter.empty

    def describe(self) -> str:
        """Return ``name: type`` with ``= default`` when it has one."""
        kind = _TYPES.get(self.type, getattr(self.type, "__name__", str(self.type)))
        return f"{self.name}: {kind}" + ("" if self.required else f" = {self.default!r}")


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """A strategy class found by name, with converted parameters: builds fresh objects."""

    name: str
    """What ``--strategy`` said."""
    cls: type[Any]
    params: tuple[tuple[str, Any], ...]

    def build(self) -> Strategy:
        """Return a new strategy object (each symbol needs its own)."""
        made: Strategy = self.cls(**dict(self.params))
        return made

    def factory(self) -> Callable[[], Strategy]:
        """Return a function that builds a new strategy object each call."""
        return self.build

    def describe(self) -> str:
        """Return ``name(p=v, ...)`` for progress lines and titles."""
        shown = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({shown})"


def _installed() -> dict[str, Any]:
    """Return the entry points of the group, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


_FILES: dict[Path, Any] = {}
"""The modules loaded from files, by resolved path: each file runs once per process (a
search resolves its strategy once per parameter set)."""


def _from_file(path: Path, attribute: str, given: str) -> Any:
    if not path.is_file():
        raise ConfigurationError("strategy", f"{given!r}: no file {str(path)!r}")
    loaded = _FILES.get(path.resolve())
    if loaded is not None:
        return _attribute(loaded, attribute, given)
    module_name = f"algotrade_user_strategy_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError("strategy", f"{given!r}: {str(path)!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[module_name]
        raise ConfigurationError("strategy", f"{given!r}: loading it failed: {e!r}") from e
    _FILES[path.resolve()] = module
    return _attribute(module, attribute, given)


def _attribute(module: Any, attribute: str, given: str) -> Any:
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(
            "strategy", f"{given!r}: {module.__name__} has no {attribute!r}"
        ) from None


def load_class(name: str) -> type[Any]:
    """Return the strategy class ``name`` designates (see the module's docstring).

    Raises:
        ConfigurationError: nothing by that name, or not a class.
    """
    found: Any
    if name in BUILT_IN:
        found = BUILT_IN[name]
    elif name in (installed := _installed()):
        try:
            found = installed[name].load()
        except Exception as e:
            raise ConfigurationError("strategy", f"{name!r}: its entry point fails: {e!r}") from e
    elif ":" in name:
        target, _, attribute = name.rpartition(":")
        if target.endswith(".py") or "/" in target:
            found = _from_file(Path(target), attribute, name)
        else:
            try:
                module = importlib.import_module(target)
            except ImportError as e:
                raise ConfigurationError(
                    "strategy", f"{name!r}: cannot import {target}: {e}"
                ) from e
            found = _attribute(module, attribute, name)
    else:
        known = ", ".join(sorted({*BUILT_IN, *installed}))
        raise ConfigurationError(
            "strategy", f"unknown strategy {name!r} (known: {known}; or module:Class, "
            "or path/to/file.py:Class)"
        )  # fmt: skip
    if not isinstance(found, type):
        raise ConfigurationError("strategy", f"{name!r} is not a class: {found!r}")
    return found


def parameters(cls: type[Any]) -> list[Parameter]:
    """Return the parameters of a strategy class's constructor, with their types."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # annotations that do not resolve: taken as text
        hints = {}
    out = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kind = hints.get(p.name)
        if kind is None and p.default is not p.empty and p.default is not None:
            kind = type(p.default)
        out.append(Parameter(p.name, kind if kind in _TYPES else str, p.default))
    return out


def convert(name: str, text: str, kind: Any) -> Any:
    """Return ``text`` as a value of ``kind`` (int, float, Decimal, str or bool).

    Raises:
        ConfigurationError: it is not one.
    """
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(text)
            return lowered in _TRUE
        if kind is Decimal:
            value = Decimal(text)
            if not value.is_finite():
                raise ValueError(text)
            return value
        if kind is float:
            number = float(text)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(text)
            return number
        return kind(text) if kind is int else text
    except (ValueError, InvalidOperation):
        raise ConfigurationError(
            "param", f"{name}={text!r} is not {_TYPES.get(kind, 'a value')}"
        ) from None


def split_params(texts: Iterable[str]) -> list[tuple[str, str]]:
    """Return ``name=value`` texts as pairs, in order.

    Raises:
        ConfigurationError: one has no ``=`` or no name.
    """
    out = []
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ConfigurationError("param", f"{text!r} is not name=value")
        out.append((name.strip(), value.strip()))
    return out


def resolve(name: str, params: Iterable[tuple[str, str]] = ()) -> StrategySpec:
    """Find the strategy ``name``, convert its parameters, and build it once to check it.

    Raises:
        ConfigurationError: see the module's docstring.
    """
    cls = load_class(name)
    accepted = {p.name: p for p in parameters(cls)}
    values: dict[str, Any] = {}
    for key, text in params:
        parameter = accepted.get(key)
        if parameter is None:
            listed = ", ".join(accepted) or "none"
            raise ConfigurationError(
                "param", f"{name} has no parameter {key!r} (it takes: {listed})"
            )
        values[key] = convert(key, text, parameter.type)
    missing = [p.name for p in accepted.values() if p.required and p.name not in values]
    if missing:
        raise ConfigurationError("param", f"{name} needs {', '.join(missing)} (--param NAME=VALUE)")
    spec = StrategySpec(name, cls, tuple(values.items()))
    try:
        made = spec.build()
    except ConfigurationError:
        raise
    except Exception as e:
        raise ConfigurationError("strategy", f"{name} refused its parameters: {e}") from None
    problems = [
        what
        for what, ok in (
            ("a str name", isinstance(getattr(made, "name", None), str)),
            ("params", hasattr(made, "params")),
            ("an on_bar(bar) method", callable(getattr(made, "on_bar", None))),
        )
        if not ok
    ]
    if problems:
        raise ConfigurationError(
            "strategy", f"{name!r} is not a strategy: it lacks {', '.join(problems)}"
        )
    return spec


def available() -> list[tuple[str, type[Any] | None, str]]:
    """Return every strategy known by name (built in, then installed) with its class (or
    ``None`` when its entry point does not load) and where it comes from."""
    out: list[tuple[str, type[Any] | None, str]] = [(n, c, "built in") for n, c in BUILT_IN.items()]
    for name, ep in sorted(_installed().items()):
        if name in BUILT_IN:
            continue
        try:
            cls = ep.load()
        except Exception:
            cls = None
        out.append((name, cls if isinstance(cls, type) else None, f"installed: {ep.value}"))
    return out
