"""MongoDB adapter: the event store in the seed's collections (``depth``, ``trade_signals``,
``orders``, ...). See ``docs/storage.md`` for every field."""

from algotrade.adapters.mongo.store import DEFAULT_DATABASE, MongoEventStore, MongoStats

__all__ = ["DEFAULT_DATABASE", "MongoEventStore", "MongoStats"]
