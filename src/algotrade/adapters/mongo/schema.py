"""The MongoDB store's schema: its database, its indexes, and the TTL of market data.

Indexes are created at start-up (idempotent). The TTL index of the market collections
(``depth``, ``trades``) is on ``stored_at``, the time of the append; stores written before
that had it on ``received_at`` and are migrated when they open (:func:`sync_ttl`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, uri_parser
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConfigurationError as MongoConfigurationError
from pymongo.errors import InvalidURI, OperationFailure

from algotrade.adapters.mongo import documents
from algotrade.domain.errors import ConfigurationError

Doc = dict[str, Any]

DEFAULT_DATABASE = "btc_data"
DEFAULT_RETENTION = 7 * 86400.0
#: Collections whose documents expire after the retention period (market data).
RETAINED = ("depth", "trades")


def database_name(url: str) -> str:
    """Return the database named in a MongoDB URL, or ``btc_data``."""
    try:
        parsed = uri_parser.parse_uri(url, validate=False)
    except (InvalidURI, MongoConfigurationError, ValueError) as e:
        raise ConfigurationError("store", f"not a valid MongoDB URL: {e}") from None
    return str(parsed.get("database") or DEFAULT_DATABASE)


async def create_indexes(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc], depth_retention: float | None
) -> None:
    """Create every index (idempotent), and make the TTL of the market collections match
    ``depth_retention`` (``None``: leave it)."""
    for name in documents.ALL_COLLECTIONS:
        coll = db[name]
        await coll.create_index([("position", ASCENDING)], unique=True, name="position")
        await coll.create_index(
            [("stream", ASCENDING), ("version", ASCENDING)], unique=True, name="stream_version"
        )
    if await is_stand_in(client):
        # nx-27017 plans "a stream's highest versions" (the compound index's own query)
        # as a scan of the collection, so each costs more as the data grows (40 ms at
        # 9,000 documents); with an index on the stream alone it stays at about 1 ms.
        # A real mongod serves it from stream_version: no extra index to maintain.
        for name in documents.ALL_COLLECTIONS:
            await db[name].create_index([("stream", ASCENDING)], name="stream")
    await db["orders"].create_index([("order_id", ASCENDING)], name="order_id")
    await db["trade_signals"].create_index(
        [("symbol", ASCENDING), ("bar_time", ASCENDING)], name="symbol_bar_time"
    )
    await db["commits"].create_index([("state", ASCENDING)], name="state")
    if depth_retention is not None:
        for name in RETAINED:
            await sync_ttl(db[name], depth_retention)


async def is_stand_in(client: AsyncMongoClient[Doc]) -> bool:
    """Return whether the server is the nx-27017 stand-in (its ``buildInfo`` says so)."""
    try:
        info = await client.admin.command("buildInfo")
    except OperationFailure:  # a server that does not say: not the stand-in
        return False
    return bool(info.get("process") == "nx_27017")


async def sync_ttl(coll: AsyncCollection[Doc], retention: float) -> None:
    """Make the TTL index on ``stored_at`` match the retention (none for 0).

    Retention counts from the storing time, as in the SQLite store: a replayed recording
    is kept, however old its receive times. Stores written before that had their TTL
    index on ``received_at`` and documents without ``stored_at``: the old index is
    dropped and those documents count as stored now (the TTL monitor ignores a document
    without the field, which would be kept for ever).
    """
    want = int(retention) or None
    existing = old = None
    async for index in await coll.list_indexes():
        key = dict(index["key"])
        if key == {"received_at": 1} and "expireAfterSeconds" in index:
            old = index  # the receive-time TTL of older versions
        elif key == {"stored_at": 1}:
            existing = index
    if existing is not None and existing.get("expireAfterSeconds") != want:
        await coll.drop_index(existing["name"])
        existing = None
    if want is not None and existing is None:
        await coll.create_index(
            [("stored_at", ASCENDING)], expireAfterSeconds=want, name="stored_at_ttl"
        )
    if want is not None and (existing is None or old is not None):
        await backfill_stored_at(coll)
    if old is not None:  # last: a migration cut short is taken up at the next start
        await coll.drop_index(old["name"])


async def backfill_stored_at(coll: AsyncCollection[Doc], batch: int = 10_000) -> None:
    """Give every document without ``stored_at`` the present time, ``batch`` at a time (each
    update stays well inside the socket timeout, however large the collection)."""
    now = dt.datetime.now(dt.UTC)
    while True:
        missing = coll.find({"stored_at": {"$exists": False}}, {"_id": 1}).limit(batch)
        ids = [doc["_id"] async for doc in missing]
        if not ids:
            return
        await coll.update_many({"_id": {"$in": ids}}, {"$set": {"stored_at": now}})
