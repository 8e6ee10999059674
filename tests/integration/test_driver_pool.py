"""The gateway's hot statements bypass SQLAlchemy's asyncio layer (``statestore.engine.DriverPool``)
but must fail exactly like the rest of the store: a database that cannot be reached or that drops
the connection is a 503 ``store_unavailable``; a wrong statement is a bug, not a 503; an
exhausted pool is a 503. Parameters, which may be personal, never appear in the error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from receiver.problems import store_problem
from statestore.engine import DriverPool, create_engines
from tests.conftest import require_service
from tests.servers import free_port

PERSONAL = "15031245610"


def _pool(url: str, *, max_size: int = 2, timeout: float = 5.0) -> DriverPool:
    engines = create_engines(url)
    assert engines.driver is not None
    return DriverPool(engines.driver._connect_args, max_size=max_size, timeout=timeout)


async def test_a_database_that_cannot_be_reached_is_store_unavailable() -> None:
    pool = _pool(f"postgresql+asyncpg://intake@127.0.0.1:{free_port()}/intake")
    try:
        with pytest.raises(OperationalError) as caught:
            await pool.fetchrow("SELECT $1::text", PERSONAL)
    finally:
        await pool.close()
    problem = store_problem(caught.value)
    assert problem is not None
    assert problem.status == 503
    assert problem.code == "store_unavailable"
    assert PERSONAL not in str(caught.value)


@pytest.fixture
async def pool() -> AsyncIterator[DriverPool]:
    url = require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL")
    driver = _pool(url)
    yield driver
    await driver.close()


@pytest.mark.postgres
async def test_statements_run_autocommitted(pool: DriverPool) -> None:
    assert tuple(await pool.fetchrow("SELECT $1::int + 1", 41)) == (42,)
    # Each statement is its own transaction, committed when it returns.
    first = (await pool.fetchrow("SELECT pg_current_xact_id()::text"))[0]
    second = (await pool.fetchrow("SELECT pg_current_xact_id()::text"))[0]
    assert first != second
    assert (await pool.fetchrow("SELECT pg_current_xact_id_if_assigned()"))[0] is None


@pytest.mark.postgres
async def test_a_wrong_statement_is_a_bug_not_a_503(pool: DriverPool) -> None:
    with pytest.raises(DBAPIError) as caught:
        await pool.fetchrow("SELECT * FROM no_such_table WHERE x = $1", PERSONAL)
    assert not isinstance(caught.value, OperationalError)
    assert store_problem(caught.value) is None
    assert PERSONAL not in str(caught.value)


@pytest.mark.postgres
async def test_a_connection_dropped_mid_statement_is_store_unavailable_and_the_pool_recovers(
    pool: DriverPool,
) -> None:
    url = make_url(require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL"))
    admin = await asyncpg.connect(
        user=url.username, password=url.password, host=url.host, port=url.port,
        database=url.database,
    )  # fmt: skip
    try:
        running = asyncio.create_task(pool.fetchrow("SELECT pg_sleep(5), $1::text", PERSONAL))
        for _ in range(50):
            await asyncio.sleep(0.05)
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(5)%'"
            )
            if pid is not None:
                break
        assert pid is not None, "the statement never started"
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True
        with pytest.raises(OperationalError) as caught:
            await running
    finally:
        await admin.close()
    problem = store_problem(caught.value)
    assert problem is not None
    assert problem.code == "store_unavailable"
    assert PERSONAL not in str(caught.value)
    # The next statement gets a new connection.
    assert (await pool.fetchrow("SELECT pg_backend_pid()"))[0] != pid


@pytest.mark.postgres
async def test_an_exhausted_pool_is_store_unavailable() -> None:
    url = require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL")
    pool = _pool(url, max_size=1, timeout=0.3)
    try:
        sleeper = asyncio.create_task(pool.fetchrow("SELECT pg_sleep(1)"))
        await asyncio.sleep(0.1)
        with pytest.raises(PoolTimeoutError) as caught:
            await pool.fetchrow("SELECT 1")
        problem = store_problem(caught.value)
        assert problem is not None
        assert problem.status == 503
        await sleeper
    finally:
        await pool.close()
