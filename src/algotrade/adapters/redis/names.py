"""The Redis names of the signal path, apart from the client code (a command that only
shows them as defaults imports no Redis client)."""

SIGNAL_STREAM = "trade_signals_stream"
SIGNAL_GROUP = "signal_group"
DEAD_LETTER_STREAM = "trade_signals_dead"
