"""Readiness that tells the truth (wiring/readiness.py, docs/operations.md "Readiness"): one slow
probe does not make a process unready, two in a row do; a failed produce does; the store must
take a write; a vanished or damaged embedded store is 503 with a cause, never 200 or 500."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event

from receiver.app import create_app
from receiver.auth import DevIssuer
from tests.conftest import UNIT, running_app
from tests.integration.helpers import appointment
from wiring.runtime import Runtime
from wiring.settings import Settings

URL = "/v1/messages/HST_Avtale/1"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime, Settings]]:
    settings = Settings(
        data_dir=tmp_path / "d", readiness_timeout_seconds=0.2, consumer_poll_seconds=0.05
    )
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        runtime = client._transport.app.state.runtime  # type: ignore[attr-defined]
        for _ in range(100):  # the consumers start
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        yield client, runtime, settings


async def test_one_slow_probe_is_not_a_failure_two_in_a_row_are(
    served: tuple[httpx.AsyncClient, Runtime, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, runtime, _ = served
    ping = runtime.event_log.ping

    async def slow() -> None:
        await asyncio.sleep(1.0)

    monkeypatch.setattr(runtime.event_log, "ping", slow)
    first = await client.get("/readyz")
    assert (first.status_code, first.json()["checks"]["event_log"]) == (200, "slow")
    second = await client.get("/readyz")
    assert (second.status_code, second.json()["checks"]["event_log"]) == (503, "unavailable")
    monkeypatch.setattr(runtime.event_log, "ping", ping)
    again = await client.get("/readyz")
    assert (again.status_code, again.json()["checks"]["event_log"]) == (200, "ok")


async def test_a_failed_produce_makes_the_log_not_ready_until_one_succeeds(
    served: tuple[httpx.AsyncClient, Runtime, Settings],
) -> None:
    client, runtime, settings = served
    runtime.produce_outcomes.last_failure = time.monotonic()
    refused = await client.get("/readyz")
    assert (refused.status_code, refused.json()["checks"]["event_log"]) == (503, "unavailable")
    token = DevIssuer.load_or_create(settings).mint(UNIT, scopes=["intake:report"])
    accepted = await client.post(
        URL, json=appointment("R-1"), headers={"Authorization": f"Bearer {token}"}
    )
    assert accepted.status_code == 202
    assert (await client.get("/readyz")).status_code == 200


async def test_the_store_must_take_a_write(
    served: tuple[httpx.AsyncClient, Runtime, Settings],
) -> None:
    client, runtime, _ = served
    engine = runtime.engines.writer.sync_engine

    def refuse_writes(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):  # reads still work
            raise sqlite3.OperationalError("attempt to write a readonly database")

    event.listen(engine, "before_cursor_execute", refuse_writes)
    try:
        answer = await client.get("/readyz")
    finally:
        event.remove(engine, "before_cursor_execute", refuse_writes)
    assert (answer.status_code, answer.json()["checks"]["store"]) == (503, "unavailable")
    assert (await client.get("/readyz")).status_code == 200


async def test_a_vanished_embedded_store_is_not_ready(
    served: tuple[httpx.AsyncClient, Runtime, Settings],
) -> None:
    client, _, settings = served
    state = settings.data_dir / "state.sqlite3"
    state.rename(settings.data_dir / "moved.sqlite3")  # the pool still holds the old file open
    answer = await client.get("/readyz")
    assert (answer.status_code, answer.json()["checks"]["store"]) == (503, "vanished")


async def test_a_damaged_embedded_store_is_503_with_its_cause(
    served: tuple[httpx.AsyncClient, Runtime, Settings],
) -> None:
    client, runtime, settings = served
    await runtime.engines.dispose()  # no connection keeps pages cached
    state = settings.data_dir / "state.sqlite3"
    with state.open("r+b") as f:
        f.write(b"\x00" * 4096)  # the header and the first page
    for suffix in ("-wal", "-shm"):
        (settings.data_dir / f"state.sqlite3{suffix}").unlink(missing_ok=True)
    token = DevIssuer.load_or_create(settings).mint(UNIT, scopes=["intake:report"])
    answer = await client.post(
        URL, json=appointment("R-2"), headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 503, answer.text
    assert (answer.json()["code"], answer.json()["cause"]) == ("store_unavailable", "store_damaged")
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()["checks"]["store"]) == (503, "unavailable")
