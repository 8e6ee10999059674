"""Engines for the store. SQLite gets WAL, a busy timeout, foreign keys and ``BEGIN IMMEDIATE``
for writes (one writer engine, so writers queue in Python instead of failing on a lock);
PostgreSQL gets one pooled engine for both reads and writes.

Every failure to reach the database surfaces as a SQLAlchemy ``DBAPIError``: asyncpg lets a
refused or timed-out connect escape as a bare ``OSError``, which the engine turns into an
``OperationalError``, so callers tell "the store is down, retry" from a bug by one exception tree
(the consumers back off and resume; the gateway answers 503, see :mod:`receiver.problems`).

On PostgreSQL the gateway's two statements on every message's critical path (reserve the receipt,
mark it validated) run on :class:`DriverPool`, asyncpg's own pool, with its failures translated
into the same exception tree: SQLAlchemy's asyncio layer (greenlet bridge, pool checkout and
return) added about 0.9 ms to the first and 0.4 ms to the second, a quarter of a one-item
message's time in the gateway."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# SQLSTATE classes and codes that mean the connection is gone: connection exceptions (08),
# the server shutting down or not yet accepting connections (57P01-57P03).
_DISCONNECT_SQLSTATES = ("08", "57P01", "57P02", "57P03")


class DriverPool:
    """asyncpg's pool, for single autocommitted statements on the hot path (PostgreSQL only).

    Failures come out as SQLAlchemy's: a lost or refused connection as ``OperationalError``
    (and every pooled connection is expired, as SQLAlchemy invalidates its pool, so one dead
    connection costs one request, not one per pooled connection), an exhausted pool as its
    ``TimeoutError``, a server error as ``DBAPIError`` carrying asyncpg's exception (with its
    SQLSTATE) as ``orig``. Parameters never go into the errors: they may hold personal data.
    """

    def __init__(self, connect_args: dict[str, Any], max_size: int, timeout: float) -> None:
        self._connect_args = connect_args
        self._max_size = max_size
        self._timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _acquire_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        min_size=0,
                        max_size=self._max_size,
                        reset=_keep_session,
                        **self._connect_args,
                    )
        return self._pool

    async def fetchrow(self, statement: str, *args: Any) -> Any:
        """The statement's first row (None when it returns none), committed on return."""
        pool = await self._acquire_pool()
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                return await conn.fetchrow(statement, *args)
        except Exception as exc:  # every driver failure leaves as SQLAlchemy's, see the class
            translated = self._translated(statement, exc)
            if getattr(translated, "connection_invalidated", False):
                await pool.expire_connections()
            raise translated from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _translated(self, statement: str, exc: Exception) -> Exception:
        if isinstance(exc, TimeoutError):
            return PoolTimeoutError(f"no connection free within {self._timeout} s")
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        # InternalClientError: the connection's protocol state broke when the server went away
        # in the middle of an operation ("another operation is in progress").
        broken = OSError | asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError
        lost = isinstance(exc, broken) or (sqlstate.startswith(_DISCONNECT_SQLSTATES))
        if lost:
            return OperationalError(statement, None, exc, connection_invalidated=True)
        if isinstance(exc, asyncpg.PostgresError):
            return DBAPIError(statement, None, exc)
        return exc


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """asyncpg resets a connection's session (``RESET ALL``, ``UNLISTEN *``, ...) each time it
    goes back to the pool: a round trip after every statement. Single autocommitted statements
    leave no session state to reset (asyncpg still rolls back a transaction left open, and waits
    for a cancelled statement, before it calls this)."""


@dataclass(frozen=True)
class StoreEngines:
    writer: AsyncEngine
    reader: AsyncEngine
    dialect: str
    driver: DriverPool | None = field(default=None)  # PostgreSQL: the hot statements' pool

    async def dispose(self) -> None:
        if self.driver is not None:
            await self.driver.close()
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
    # The same connection arguments SQLAlchemy's asyncpg dialect derives from the URL.
    _, connect_args = engine.dialect.create_connect_args(parsed)
    driver = DriverPool(dict(connect_args), max_size=10, timeout=30.0)
    return StoreEngines(engine, engine, parsed.get_backend_name(), driver)


def create_migration_engine(url: str) -> AsyncEngine:
    """A throwaway engine for Alembic (no pool, so no connection outlives the migration)."""
    _prepare_sqlite_directory(url)
    return create_async_engine(url, poolclass=NullPool)
