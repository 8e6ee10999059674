"""PostgreSQL restarted under load, in the production split (``intake gateway`` and ``intake
consume projector`` against real Kafka and PostgreSQL): while the database is down the gateway
answers 503 with Retry-After as problem+json (never 500, never 202), the projector pauses and
retries with backoff instead of dying, and both resume by themselves when it is back. At the end
every item that got a 202 is in the store exactly once and every receipt has a final status."""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_service
from tests.reliability.harness import (
    POSTGRES_SH,
    URL,
    Outcomes,
    Service,
    appointments,
    count_store,
    metric,
    migrate_store,
    send_until_acknowledged,
    service_script,
    token_for,
    wait_until_final,
)
from tests.servers import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

CLIENTS = 3
ITEMS_PER_MESSAGE = 4  # the last of each message is invalid, so receipts end partially_applied
BEFORE_OUTAGE_SECONDS = 5.0
OUTAGE_SECONDS = 8.0
AFTER_OUTAGE_SECONDS = 6.0


async def test_postgres_restart_under_load_loses_nothing_and_applies_nothing_twice(
    own_postgres: tuple[str, Path],
    services: list[Service],
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    bootstrap = require_service("INTAKE_TEST_KAFKA_BOOTSTRAP", "Apache Kafka")
    database_url, pg_run_dir = own_postgres
    data_dir = tmp_path / "data"
    env = {
        "INTAKE_EVENT_LOG": "kafka",
        "INTAKE_KAFKA_BOOTSTRAP": bootstrap,
        "INTAKE_TOPIC_PREFIX": f"pgout{uuid.uuid4().hex[:8]}",
        "INTAKE_DATABASE_URL": database_url,
        "INTAKE_PRODUCE_TIMEOUT_SECONDS": "5",
        "INTAKE_CONSUMER_POLL_SECONDS": "0.1",
        "INTAKE_RATE_LIMIT_PER_MINUTE": "1000000",
    }
    await migrate_store(data_dir, env, services)

    port, metrics_port = free_port(), free_port()
    gateway = Service(
        ["gateway", "--port", str(port), "--data-dir", str(data_dir)], env, tmp_path / "gw.log"
    )
    projector = Service(
        ["consume", "projector", "--data-dir", str(data_dir), "--metrics-port", str(metrics_port)],
        env,
        tmp_path / "projector.log",
    )
    services += [gateway, projector]
    gateway.start()
    projector.start()
    base = f"http://127.0.0.1:{port}"
    await gateway.wait_ready(f"{base}/readyz")
    await projector.wait_ready(f"http://127.0.0.1:{metrics_port}/metrics")
    token = token_for(data_dir)

    outcomes = Outcomes()
    stop_load = asyncio.Event()
    numbers = itertools.count()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 240

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not stop_load.is_set():
            n = next(numbers)
            ids = [f"pg-{n}-{i}" for i in range(ITEMS_PER_MESSAGE)]
            body = appointments(ids, invalid=ids[-1:])
            await send_until_acknowledged(
                client, f"{base}{URL}", body, f"pg-{n}", token, outcomes, deadline=deadline
            )
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(timeout=30) as client:
        load = [asyncio.create_task(client_loop(client)) for _ in range(CLIENTS)]
        try:
            await asyncio.sleep(BEFORE_OUTAGE_SECONDS)
            before = len(outcomes.acknowledged)
            assert before > 0, outcomes.statuses
            await asyncio.to_thread(service_script, POSTGRES_SH, "stop", pg_run_dir)
            outage_started = loop.time()
            await asyncio.sleep(1.0)
            down_from = len(outcomes.acknowledged)  # answers that were on their way are in
            ready = await client.get(f"{base}/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["store"] == "unavailable"
            direct = await client.post(
                f"{base}{URL}",
                json=appointments(["pg-probe"]),
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "pg-probe"},
            )
            assert direct.status_code == 503, direct.text
            assert direct.headers["content-type"].startswith("application/problem+json")
            assert direct.json()["code"] == "store_unavailable"
            assert int(direct.headers["retry-after"]) >= 1
            await asyncio.sleep(OUTAGE_SECONDS - (loop.time() - outage_started))
            during = len(outcomes.acknowledged) - down_from
            await asyncio.to_thread(service_script, POSTGRES_SH, "resume", pg_run_dir)
            await asyncio.sleep(AFTER_OUTAGE_SECONDS)
        except BaseException:
            for task in load:  # they would retry until their deadline
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
            raise
        stop_load.set()
        await asyncio.gather(*load)  # each finishes the message it is sending
        assert (await client.get(f"{base}/readyz")).status_code == 200  # no restart needed

        assert not outcomes.unexpected, outcomes.unexpected[:5]
        assert outcomes.server_errors() == 0, outcomes.statuses
        assert outcomes.statuses[503] > 0, "the outage was not seen by the clients"
        final = await wait_until_final(
            client,
            base,
            [receipt_id for receipt_id, _ in outcomes.acknowledged.values()],
            token,
            timeout=120,
        )
        projector_metrics = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text

    assert projector.alive, f"the projector died:\n{projector.tail()}"
    assert "unexpected" not in gateway.log.read_text(), "the gateway logged a bug (a 500)"
    backoff = [
        float(s)
        for s in re.findall(
            r"projector paused: \w+: .*?; retrying in ([\d.]+)s", projector.tail(10**7)
        )
    ]
    assert len(backoff) >= 3, f"the projector did not pause and retry: {backoff}"
    assert max(backoff) >= 4 * min(backoff), f"no backoff: {backoff}"
    assert metric(projector_metrics, "intake_store_errors_total", component="projector") > 0
    assert metric(projector_metrics, "intake_consumer_healthy", consumer="projector") == 1
    assert set(final) == {"partially_applied"}, final

    store = await count_store(database_url, outcomes.acknowledged_items)
    load_seconds = BEFORE_OUTAGE_SECONDS + OUTAGE_SECONDS + AFTER_OUTAGE_SECONDS
    figures.update(
        load=f"{CLIENTS} clients, {ITEMS_PER_MESSAGE} items per message "
        f"({ITEMS_PER_MESSAGE - 1} valid), for {load_seconds:.0f} s",
        faults=f"PostgreSQL stopped (fast shutdown) for {OUTAGE_SECONDS:.0f} s, then restarted",
        messages_acknowledged=len(outcomes.acknowledged),
        acknowledged_while_down=during,
        projector_retry_delays_s=backoff,
        answers=dict(sorted(outcomes.statuses.items())),
        problem_codes=dict(outcomes.codes),
        items_acknowledged=len(outcomes.acknowledged_items),
        items_found=store.found,
        items_lost=store.lost,
        duplicates=store.duplicates,
        receipts_final=dict(final),
        projector_store_errors=metric(
            projector_metrics, "intake_store_errors_total", component="projector"
        ),
    )
    assert during == 0, "a 202 while the store was down"
    assert store.lost == 0
    assert store.duplicates == 0
    assert store.unexpected == 0
    assert store.receipts == len(outcomes.acknowledged)
    assert store.receipts_not_validated == 0
