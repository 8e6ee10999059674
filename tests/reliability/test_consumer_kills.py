"""The consumer processes killed with SIGKILL at random moments, ten times, while a client streams
messages through a running gateway, in the production split on PostgreSQL (``intake gateway``,
``intake consume projector`` and ``intake consume receipts`` sharing the embedded log).

``tests/integration/test_projector_crash.py`` proves that a killed projector applies a produced
stream exactly once and that the state is the fold of the unique events. This adds what a vendor
sees: the stream comes in over HTTP while the projector and the webhook dispatcher die, and in the
end every receipt has reached its final status, every acknowledged item is in the store once, each
object's state is that of the last message that changed it, and the webhook received every final
status (at least once) even though the dispatcher was killed too."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from starlette.requests import Request
from starlette.responses import Response

from tests.conftest import fresh_postgres_database, require_service
from tests.reliability.harness import (
    URL,
    Outcomes,
    Service,
    appointments,
    count_store,
    migrate_store,
    send_until_acknowledged,
    token_for,
    wait_until_final,
)
from tests.servers import free_port, webhook_endpoint

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

KILLS = 10
OBJECTS = 40  # each message updates 4 of them, so objects have histories
SECRET = "reliability-webhook-secret-0123456789"


class WebhookReceiver:
    """Receives webhook pushes on loopback; remembers the statuses seen per receipt."""

    def __init__(self) -> None:
        self.statuses: dict[str, set[str]] = {}
        self.url = ""

    async def handle(self, request: Request) -> Response:
        receipt = orjson.loads(await request.body())["receipt"]
        self.statuses.setdefault(receipt["receipt_id"], set()).add(receipt["status"])
        return Response(status_code=204)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver()
    async with webhook_endpoint(hook.handle) as url:
        hook.url = url
        yield hook


async def _pending(database_url: str, log_path: Path) -> int:
    """Accepted records in the log that the projector has not yet applied (its stored offsets)."""
    log = sqlite3.connect(log_path)
    try:
        end = sum(
            n
            for (n,) in log.execute(
                "SELECT next_offset FROM partitions WHERE topic LIKE '%.accepted.%'"
            )
        )
    finally:
        log.close()
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            applied = (
                await conn.execute(
                    text(
                        "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
                        " WHERE consumer = 'projector'"
                    )
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    return int(end) - int(applied)


async def _states(database_url: str) -> dict[str, tuple[str, int]]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT object_id, state, event_count FROM objects"))
            return {str(r.object_id): (str(r.state["journalId"]), int(r.event_count)) for r in rows}
    finally:
        await engine.dispose()


async def test_killed_consumers_leave_every_receipt_final_and_every_item_applied_once(
    services: list[Service],
    receiver: WebhookReceiver,
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    database_url = await fresh_postgres_database(
        require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL")
    )
    data_dir = tmp_path / "data"
    env = {
        "INTAKE_DATABASE_URL": database_url,
        "INTAKE_CONSUMER_POLL_SECONDS": "0.05",
        "INTAKE_PROJECTOR_BATCH_SIZE": "20",
        "INTAKE_RATE_LIMIT_PER_MINUTE": "1000000",
        "INTAKE_WEBHOOK_POLL_SECONDS": "0.1",
        "INTAKE_WEBHOOK_BACKOFF_SECONDS": "0.2",
        "INTAKE_WEBHOOK_TIMEOUT_SECONDS": "2",
    }
    await migrate_store(data_dir, env, services)
    port = free_port()
    gateway = Service(
        ["gateway", "--port", str(port), "--data-dir", str(data_dir)], env, tmp_path / "gw.log"
    )
    consumers = {
        name: Service(["consume", name, "--data-dir", str(data_dir)], env, tmp_path / f"{name}.log")
        for name in ("projector", "receipts")
    }
    services += [gateway, *consumers.values()]
    gateway.start()
    base = f"http://127.0.0.1:{port}"
    await gateway.wait_ready(f"{base}/readyz")
    for consumer in consumers.values():
        consumer.start()
    token = token_for(data_dir)
    auth = {"Authorization": f"Bearer {token}"}

    outcomes = Outcomes()
    expected: dict[str, tuple[str, int]] = {}  # object id -> (last journal, events)
    stop_stream = asyncio.Event()
    rng = random.Random(12)
    loop = asyncio.get_running_loop()

    async def stream(client: httpx.AsyncClient) -> None:
        n = 0
        while not stop_stream.is_set():
            objects = [f"obj-{(4 * n + i) % OBJECTS}" for i in range(4)]
            body = appointments([*objects, f"bad-{n}"], invalid=[f"bad-{n}"])
            for item in body[0]["avtale"]:
                item["journalId"] = f"J-{n}"
            await send_until_acknowledged(
                client, f"{base}{URL}", body, f"m-{n}", token, outcomes, deadline=loop.time() + 60
            )
            for oid in objects:
                expected[oid] = (f"J-{n}", expected.get(oid, ("", 0))[1] + 1)
            n += 1
            await asyncio.sleep(0.02)

    killed_with_work_pending = 0
    async with httpx.AsyncClient(timeout=30) as client:
        put = await client.put(
            f"{base}/v1/webhook", json={"url": receiver.url, "secret": SECRET}, headers=auth
        )
        assert put.status_code == 200, put.text
        sender = asyncio.create_task(stream(client))
        try:
            for round_ in range(KILLS):
                # Start-up takes about a second; then the consumer works until killed.
                await asyncio.sleep(rng.uniform(1.2, 2.2))
                victims = ["projector"] if round_ % 2 else ["projector", "receipts"]
                for name in victims:
                    await consumers[name].signal(signal.SIGKILL)
                if await _pending(database_url, data_dir / "eventlog.sqlite3") > 0:
                    killed_with_work_pending += 1
                for name in victims:
                    consumers[name].start()
        except BaseException:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            raise
        stop_stream.set()
        await sender
        final = await wait_until_final(
            client,
            base,
            [receipt_id for receipt_id, _ in outcomes.acknowledged.values()],
            token,
            timeout=120,
        )
        receipt_ids = {receipt_id for receipt_id, _ in outcomes.acknowledged.values()}
        deadline = loop.time() + 60
        while any("partially_applied" not in receiver.statuses.get(r, ()) for r in receipt_ids):
            assert loop.time() < deadline, "webhook pushes of final statuses are missing"
            await asyncio.sleep(0.2)

    for name, consumer in consumers.items():
        assert consumer.alive, f"{name} died:\n{consumer.tail()}"
        assert await consumer.signal(signal.SIGTERM) == 0, consumer.tail()
    store = await count_store(database_url, outcomes.acknowledged_items)
    states = await _states(database_url)
    figures.update(
        load=f"{len(outcomes.acknowledged)} messages of 5 items (4 valid) over HTTP",
        faults=f"projector SIGKILLed {consumers['projector'].kills} times, webhook dispatcher "
        f"{consumers['receipts'].kills} times",
        kills_with_work_pending=killed_with_work_pending,
        items_acknowledged=len(outcomes.acknowledged_items),
        items_found=store.found,
        duplicates=store.duplicates,
        receipts_final=dict(final),
        webhook_final_pushes=sum(
            1 for r in receipt_ids if "partially_applied" in receiver.statuses[r]
        ),
    )
    assert set(final) == {"partially_applied"}, final
    assert store.lost == 0
    assert store.duplicates == 0
    assert store.unexpected == 0
    assert states == expected  # each object: the last message's state, every event once
    assert killed_with_work_pending >= KILLS // 2, "the kills should land while work is pending"
