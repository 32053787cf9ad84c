"""The error tree says what is raised: its picture lists every class, the domain and the
use cases raise its errors only, and an adapter's driver error arrives translated."""

from __future__ import annotations

import ast
import re
import sqlite3
from pathlib import Path

import pytest

import algotrade.domain.errors as errors
from algotrade.adapters.sqlite import SqliteEventStore
from algotrade.domain.errors import AlgotradeError, StoreError
from tests.support.builders import diff

SRC = Path(errors.__file__).resolve().parents[1]
BUILTIN = {"ValueError", "TypeError", "KeyError", "RuntimeError", "IndexError", "LookupError"}


def test_the_picture_lists_every_class_of_the_tree() -> None:
    """The docstring's tree names exactly the AlgotradeError classes errors.py defines."""
    drawn = set(re.findall(r"^\s*(?:[│├└─ ]*)([A-Z]\w+Error)\b", errors.__doc__ or "", re.M))
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, AlgotradeError)
    }
    assert drawn == defined
    assert {"ExchangeError", "MessagingError", "StoreError", "ConcurrencyError"} <= defined


def test_an_exchange_error_is_a_messaging_error() -> None:
    """Whoever retries a message that did not get through retries the exchange's too."""
    assert issubclass(errors.ExchangeError, errors.MessagingError)


@pytest.mark.parametrize("room", ["domain", "services"])
def test_the_core_raises_its_own_errors(room: str) -> None:
    """No module of the domain or the use cases raises a bare built-in error."""
    raised: dict[str, list[str]] = {}
    for path in sorted((SRC / room).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = getattr(node.exc.func, "id", None)
                if name in BUILTIN:
                    raised.setdefault(path.name, []).append(f"{name} line {node.lineno}")
    assert raised == {}


@pytest.mark.anyio
async def test_a_sqlite_failure_on_reading_is_a_store_error(tmp_path: Path) -> None:
    """A read that SQLite cannot serve (its table gone) is a StoreError naming the file."""
    path = tmp_path / "broken.db"
    store = SqliteEventStore(path)
    try:
        await store.append([diff(1, 1)])
        with sqlite3.connect(path) as raw:
            raw.execute("DROP TABLE events")
        with pytest.raises(StoreError, match=r"cannot read '.*broken\.db': no such table"):
            await store.read_all(0)
        with pytest.raises(StoreError, match="no such table"):
            await store.read_stream("depth-BTCUSDT")
    finally:
        await store.close()
