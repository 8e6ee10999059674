"""The person numbers of every example message, valid and rejected, sent through Kafka and
PostgreSQL (the production adapters, real servers): not one of them is in any record of any of
the installation's topics (aborted transactions included), in a ``pg_dump`` of the database, in
the logs or in ``/metrics``."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from receiver.app import create_app
from receiver.auth import DevIssuer
from tests.conftest import UNIT, fresh_postgres_database, require_service, running_app
from tests.integration.helpers import wait_for_status
from tests.integration.test_identities import _numbers
from tests.integration.test_webhooks import SECRET
from tests.servers import Receiver
from wiring.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

MODELS = Path(__file__).resolve().parents[2] / "schemas" / "models"


def _pg_dump() -> str:
    found = shutil.which("pg_dump") or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))[::-1]), None
    )
    if found is None:
        pytest.fail("pg_dump is not installed (PostgreSQL's client tools)")
    return found


async def _topic_bytes(bootstrap: str, prefix: str) -> bytes:
    """Every key, value and header of every record in the installation's topics, read
    uncommitted so that aborted transactions' records are read too."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
    finally:
        await admin.close()
    assert topics
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"scan-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        isolation_level="read_uncommitted",
        enable_auto_commit=False,
    )
    await consumer.start()
    chunks: list[bytes] = []
    try:
        assignment: set[object] = set()
        while not assignment:
            await asyncio.sleep(0.1)
            assignment = set(consumer.assignment())
        ends = await consumer.end_offsets(list(assignment))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            positions = {tp: await consumer.position(tp) for tp in ends}
            if all(positions[tp] >= end for tp, end in ends.items()):
                break
            assert loop.time() < deadline, "could not read the topics to their end"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    chunks += [r.key or b"", r.value or b""]
                    chunks += [bytes(v or b"") for _, v in r.headers or ()]
    finally:
        await consumer.stop()
    return b"\n".join(chunks)


async def test_no_person_number_in_topics_database_logs_or_metrics(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    receiver: Receiver,
) -> None:
    caplog.set_level(logging.DEBUG)
    bootstrap = require_service("INTAKE_TEST_KAFKA_BOOTSTRAP", "Apache Kafka")
    database_url = await fresh_postgres_database(
        require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL")
    )
    prefix = f"pii{uuid.uuid4().hex[:10]}"
    settings = Settings(
        data_dir=tmp_path / "data",
        event_log="kafka",
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        database_url=database_url,
        consumer_poll_seconds=0.05,
    )
    issuer = DevIssuer.load_or_create(settings)
    auth = {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:report'])}"}
    reviewer = {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:review'])}"}
    numbers: set[str] = set()
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        hook = {"url": receiver.url, "secret": SECRET}
        assert (await client.put("/v1/webhook", json=hook, headers=auth)).status_code == 200
        receipts = []
        for path in sorted(MODELS.glob("*/1/examples/*/*.json")):
            if path.name.endswith(".expected.json"):
                continue
            message = orjson.loads(path.read_bytes())
            numbers |= _numbers(message)
            url = f"/v1/messages/{path.parents[3].name}/1"
            response = await client.post(url, json=message, headers=auth)
            assert response.status_code in (202, 422), (path, response.text)
            if response.status_code == 202:
                receipts.append(response.json()["receipt_id"])
        for receipt_id in receipts:
            await wait_for_status(
                client, receipt_id, auth, {"applied", "partially_applied", "rejected"}
            )
        for _ in range(200):  # the review index has the rejected items
            listed = (await client.get("/v1/review/items", headers=reviewer)).json()
            if listed.get("total", 0) > 0:
                break
            await asyncio.sleep(0.05)
        for _ in range(300):  # every receipt pushed to the unit's webhook
            pushed = {orjson.loads(b)["receipt"]["receipt_id"] for _, b in receiver.received}
            if set(receipts) <= pushed:
                break
            await asyncio.sleep(0.1)
        assert set(receipts) <= pushed
        metrics = (await client.get("/metrics")).text
    assert len(numbers) >= 10

    topics = await _topic_bytes(bootstrap, prefix)
    assert len(topics) > 10_000
    dsn = make_url(database_url).set(drivername="postgresql")
    dump = subprocess.run(
        [_pg_dump(), "--data-only", dsn.render_as_string(hide_password=False)],
        check=True,
        capture_output=True,
    ).stdout
    assert b"identity_vault" in dump
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records
    places = {
        "topics": topics,
        "pg_dump": dump,
        "logs": logs.encode(),
        "metrics": metrics.encode(),
        "webhooks": b"\n".join(body for _, body in receiver.received),
    }
    found = {
        number: [where for where, data in places.items() if number.encode() in data]
        for number in numbers
    }
    assert {n: where for n, where in found.items() if where} == {}
