"""Engines for the store. SQLite gets WAL, a busy timeout, foreign keys and ``BEGIN IMMEDIATE``
for writes (one writer engine, so writers queue in Python instead of failing on a lock);
PostgreSQL gets one pooled engine for both reads and writes.

Every failure to reach the database surfaces as a SQLAlchemy ``DBAPIError``: asyncpg lets a
refused or timed-out connect escape as a bare ``OSError``, which the engine turns into an
``OperationalError``, so callers tell "the store is down, retry" from a bug by one exception tree
(the consumers back off and resume; the gateway answers 503, see :mod:`receiver.problems`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class StoreEngines:
    writer: AsyncEngine
    reader: AsyncEngine
    dialect: str

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def _sqlite_engine(url: str, *, begin: str, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_size=pool_size,
        max_overflow=0,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that we can say BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


def _connect_failures_as_operational_errors(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as exc:  # refused, reset, unreachable, timed out (TimeoutError)
            raise dialect.loaded_dbapi.OperationalError(
                f"cannot connect to the database: {type(exc).__name__}: {exc}"
            ) from exc


def _prepare_sqlite_directory(url: str) -> None:
    """Create the SQLite file's directory, and refuse one that cannot be written: in WAL mode
    SQLite creates files beside the database, and a read-only data dir would otherwise fail
    later as an unhelpful "unable to open database file"."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    directory = Path(parsed.database).parent
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK):
        raise PermissionError(
            f"the store's directory {directory} is not writable (a read-only file system or "
            "missing permissions): the embedded SQLite store must write there"
        )


def create_engines(url: str) -> StoreEngines:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _prepare_sqlite_directory(url)
        writer = _sqlite_engine(url, begin="BEGIN IMMEDIATE", pool_size=1)
        reader = _sqlite_engine(url, begin="BEGIN", pool_size=4)
        return StoreEngines(writer, reader, "sqlite")
    engine = create_async_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_size=10,
        max_overflow=10,
        # No ping before each checkout (it cost a round trip, ≈0.4 ms, on every transaction). A
        # connection found dead in use fails that request with 503 store_unavailable (the client
        # retries) and makes SQLAlchemy discard every connection pooled before it; the
        # consumers retry with backoff. Recycling bounds how long an idle connection is kept.
        pool_pre_ping=False,
        pool_recycle=1800,
        pool_use_lifo=True,
    )
    _connect_failures_as_operational_errors(engine)
    return StoreEngines(engine, engine, parsed.get_backend_name())


def create_migration_engine(url: str) -> AsyncEngine:
    """A throwaway engine for Alembic (no pool, so no connection outlives the migration)."""
    _prepare_sqlite_directory(url)
    return create_async_engine(url, poolclass=NullPool)
