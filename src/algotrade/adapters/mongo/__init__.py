"""MongoDB adapter: the event store in the seed's collections (``depth``, ``trade_signals``,
``orders``, ...). See ``docs/storage.md`` for every field.

``store`` (appends and reads), ``commits`` (the commit log of position ranges), ``schema``
(database, indexes, TTL), ``retries`` (the driver's errors: retried or translated),
``documents`` (events to documents and back)."""

from algotrade.adapters.mongo.retries import MongoStats
from algotrade.adapters.mongo.schema import DEFAULT_DATABASE
from algotrade.adapters.mongo.store import MongoEventStore

__all__ = ["DEFAULT_DATABASE", "MongoEventStore", "MongoStats"]
