"""Redis streams: signals published by the processor, consumed by traders in a group."""

from algotrade.adapters.redis.codec import SCHEMA_VERSION, signal_from_fields, signal_to_fields
from algotrade.adapters.redis.streams import (
    DEAD_LETTER_STREAM,
    SIGNAL_GROUP,
    SIGNAL_STREAM,
    RedisSignalConsumer,
    RedisSignalPublisher,
)

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
