"""The same pipeline on the production adapters: Apache Kafka and PostgreSQL, real servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from eventlog.kafka import KafkaEventLog
from receiver.app import create_app
from receiver.auth import DevIssuer
from statestore.codelists import CodeListRepository
from tests.conftest import UNIT, fresh_postgres_database, require_service, running_app
from tests.integration.helpers import (
    appointment,
    count_records,
    example_message,
    wait_for_status,
)
from tests.integration.test_review import rejected_message, wait_for_items
from validators.codelists import parse_tsv
from wiring.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

URL = "/v1/messages/HST_Avtale/1"


@pytest.fixture
async def production_settings(tmp_path: Path) -> Settings:
    bootstrap = require_service("INTAKE_TEST_KAFKA_BOOTSTRAP", "Apache Kafka")
    database_url = await fresh_postgres_database(
        require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL")
    )
    return Settings(
        data_dir=tmp_path / "data",
        event_log="kafka",
        kafka_bootstrap=bootstrap,
        topic_prefix=f"it{uuid.uuid4().hex[:10]}",
        database_url=database_url,
        consumer_poll_seconds=0.05,
    )


@pytest.fixture
async def production_client(production_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(production_settings, registry=CollectorRegistry())
    async with running_app(app) as client:
        yield client


@pytest.fixture
def production_auth(production_settings: Settings) -> dict[str, str]:
    token = DevIssuer.load_or_create(production_settings).mint(UNIT, scopes=["intake:report"])
    return {"Authorization": f"Bearer {token}"}


async def test_accepted_items_reach_postgres_through_kafka(
    production_client: httpx.AsyncClient,
    production_auth: dict[str, str],
    production_settings: Settings,
) -> None:
    response = await production_client.post(
        URL, json=example_message("invalid/item_errors.json"), headers=production_auth
    )
    assert response.status_code == 202, response.text
    receipt = response.json()
    final = await wait_for_status(
        production_client, receipt["receipt_id"], production_auth, {"partially_applied"}
    )
    assert [i["status"] for i in final["items"]] == ["rejected", "applied", "rejected"]

    log = KafkaEventLog(production_settings.kafka_bootstrap or "")
    await log.start()
    try:
        prefix = production_settings.topic_prefix
        quarantined = await count_records(log, f"{prefix}.quarantine")
        accepted = await count_records(log, f"{prefix}.accepted.HST_Avtale.v1")
    finally:
        await log.close()
    assert (quarantined, accepted) == (2, 1)

    ready = await production_client.get("/readyz")
    assert ready.json()["checks"]["event_log"] == "ok"
    assert ready.json()["checks"]["store"] == "ok"


async def test_retries_and_updates_on_the_production_adapters(
    production_client: httpx.AsyncClient, production_auth: dict[str, str]
) -> None:
    headers = {**production_auth, "Idempotency-Key": "prod-1"}
    first = await production_client.post(URL, json=appointment("P-1", status=1), headers=headers)
    again = await production_client.post(URL, json=appointment("P-1", status=1), headers=headers)
    assert first.json()["receipt_id"] == again.json()["receipt_id"]
    second = await production_client.post(
        URL, json=appointment("P-1", status=4), headers=production_auth
    )
    for receipt in (first.json(), second.json()):
        await wait_for_status(
            production_client, receipt["receipt_id"], production_auth, {"applied"}
        )
    runtime = production_client._transport.app.state.runtime  # type: ignore[attr-defined]
    state = await runtime.state.get_object(UNIT, "HST_Avtale", "P-1")
    assert state is not None
    assert (state.state["oppmoteStatus"], state.event_count) == (4, 2)


async def test_review_and_replay_on_the_production_adapters(
    production_client: httpx.AsyncClient,
    production_auth: dict[str, str],
    production_settings: Settings,
) -> None:
    """Rejected items travel through the Kafka quarantine topic into the PostgreSQL review
    index; a replay after a code-list fix goes back through Kafka to the projector."""
    issuer = DevIssuer.load_or_create(production_settings)
    reviewer = {"Authorization": "Bearer " + issuer.mint(UNIT, scopes=["intake:review"])}
    response = await production_client.post(
        URL, json=rejected_message("PR-1"), headers=production_auth
    )
    receipt = response.json()
    await wait_for_items(production_client, reviewer, 1)

    runtime = production_client._transport.app.state.runtime  # type: ignore[attr-defined]
    corrected = (
        "code\tdisplay\tactive\teffective\nPQ\tPlanlagt\t1\t2020-01-01\nNY\tNy\t1\t2024-01-01\n"
    )
    await CodeListRepository(runtime.engines).save(
        parse_tsv(corrected, codelist_id="hst-konsultasjonstype", title="KPR konsultasjonstype",
                  sample=False, source="test")
    )  # fmt: skip
    done = await production_client.post(
        "/v1/review/replay", json={"filter": {"rule_id": "KOD-001"}}, headers=reviewer
    )
    assert len(done.json()["replayed"]) == 1, done.text
    final = await wait_for_status(
        production_client, receipt["receipt_id"], production_auth, {"applied"}
    )
    assert [i["status"] for i in final["items"]] == ["applied", "applied"]
