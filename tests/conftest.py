"""Shared fixtures. Services (Kafka, PostgreSQL) are named by environment variables that
``make test`` sets after starting them; without them the tests that need them skip, unless
``INTAKE_REQUIRE_SERVICES=1`` (CI), where a missing service fails the run."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.auth import DevIssuer
from wiring.settings import Settings

UNIT = "974152533"
OTHER_UNIT = "987654325"


def require_service(env_var: str, what: str) -> str:
    value = os.environ.get(env_var)
    if value:
        return value
    if os.environ.get("INTAKE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required here (INTAKE_REQUIRE_SERVICES=1) but {env_var} is unset")
    pytest.skip(f"{what} not available: set {env_var} (make test starts it)")


async def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the test server; returns its SQLAlchemy URL."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(
        user=url.username,
        password=url.password,
        host=url.host,
        port=url.port,
        database=url.database,
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", environment="test", consumer_poll_seconds=0.05)


@pytest.fixture
def issuer(settings: Settings) -> DevIssuer:
    return DevIssuer.load_or_create(settings)


@pytest.fixture
def token(issuer: DevIssuer) -> str:
    return issuer.mint(UNIT, scopes=["intake:report"])


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, reached in-process over httpx."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as client:
            yield client


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(
    settings: Settings, registry: CollectorRegistry
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(settings, registry=registry)) as c:
        yield c


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly how many tests ran against the real services, and how many skipped."""
    lines = []
    services = (
        ("kafka", "Apache Kafka"),
        ("postgres", "PostgreSQL"),
        ("browser", "Chromium"),
        ("interop", "peers we did not write (tests/interop)"),
    )
    for marker, service in services:
        counts: dict[str, int] = {}
        for outcome in ("passed", "failed", "skipped", "error"):
            for report in terminalreporter.stats.get(outcome, []):
                if getattr(report, "when", "call") in ("call", "setup") and marker in getattr(
                    report, "keywords", {}
                ):
                    counts[outcome] = counts.get(outcome, 0) + 1
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "none"
        lines.append(f"tests against {service}: {summary}")
    terminalreporter.write_sep("-", "real services")
    for line in lines:
        terminalreporter.write_line(line)
