"""Generated initialisers: frozen, slotted dataclasses built at the cost of a plain class.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; the
collector builds a depth event per frame and the stores one per document read, so
:func:`fast_init` replaces it by one generated from the class's fields that writes the
slots directly (same signature, same defaults, same ``__post_init__``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def slot_setters(cls: type) -> dict[str, Any]:
    """Return each field's slot descriptor ``__set__``, found along the MRO."""
    setters = {}
    for f in dataclasses.fields(cls):
        for klass in cls.__mro__:
            descriptor = klass.__dict__.get(f.name)
            if descriptor is not None and hasattr(descriptor, "__set__"):
                setters[f.name] = descriptor.__set__
                break
    return setters


def fast_init(cls: type[T]) -> type[T]:
    """Give a frozen, slotted dataclass a faster ``__init__`` with the same signature.

    A frozen dataclass's generated ``__init__`` stores each field through
    ``object.__setattr__``; storing through the slot descriptors directly costs about
    half as much, and events are built for every market message. Immutability is
    unchanged: ``__setattr__`` still raises ``FrozenInstanceError``.
    """
    setters = slot_setters(cls)
    namespace: dict[str, Any] = {}
    params, body = [], []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # cls is a dataclass
        namespace[f"set_{f.name}"] = setters[f.name]
        if f.default is not dataclasses.MISSING:
            namespace[f"default_{f.name}"] = f.default
            params.append(f"{f.name}=default_{f.name}")
        else:
            params.append(f.name)
        body.append(f"    set_{f.name}(self, {f.name})")
    keyword_only = all(f.kw_only for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    star = "*, " if keyword_only else ""
    source = f"def __init__(self, {star}{', '.join(params)}):\n" + "\n".join(body)
    exec(source, namespace)  # the code is built from field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]  # replacing the generated one
    return cls


def copier(cls: type[T], replaced: tuple[str, ...]) -> Callable[..., T]:
    """Return a function ``copy(instance, *values)`` that copies an instance of ``cls``
    with the fields ``replaced`` set to ``values``: a fast ``dataclasses.replace``.

    Like dataclasses itself, the function is generated once per class: one attribute store
    per field, no keyword handling, no per-call field introspection.
    """
    lines = [f"def copy(event, {', '.join(replaced)}):", "    new = new_(cls)"]
    namespace: dict[str, Any] = {"cls": cls, "new_": object.__new__}
    for name, setter in slot_setters(cls).items():
        namespace[f"set_{name}"] = setter
        value = name if name in replaced else f"event.{name}"
        lines.append(f"    set_{name}(new, {value})")
    lines.append("    return new")
    exec("\n".join(lines), namespace)  # the code is built from field names only
    copy: Callable[..., T] = namespace["copy"]
    return copy
