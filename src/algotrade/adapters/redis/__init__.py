"""Redis streams: signals published by the processor, consumed by traders in a group.

The client classes are imported when first used (PEP 562): a command that only names the
streams does not pay for redis-py.
"""

from typing import TYPE_CHECKING, Any

from algotrade.adapters.redis.names import DEAD_LETTER_STREAM, SIGNAL_GROUP, SIGNAL_STREAM

if TYPE_CHECKING:
    from algotrade.adapters.redis.codec import (
        SCHEMA_VERSION,
        signal_from_fields,
        signal_to_fields,
    )
    from algotrade.adapters.redis.streams import RedisSignalConsumer, RedisSignalPublisher

_LAZY = {
    "SCHEMA_VERSION": "codec",
    "signal_from_fields": "codec",
    "signal_to_fields": "codec",
    "RedisSignalConsumer": "streams",
    "RedisSignalPublisher": "streams",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "DEAD_LETTER_STREAM",
    "SCHEMA_VERSION",
    "SIGNAL_GROUP",
    "SIGNAL_STREAM",
    "RedisSignalConsumer",
    "RedisSignalPublisher",
    "signal_from_fields",
    "signal_to_fields",
]
