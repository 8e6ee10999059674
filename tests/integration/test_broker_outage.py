"""The broker stops while messages are being sent: the gateway answers 503 with Retry-After (never
202 for events the broker did not acknowledge), and recovers by itself when the broker is back."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.auth import DevIssuer
from tests.conftest import UNIT, require_service, running_app
from tests.integration.helpers import appointment, wait_for_status
from wiring.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KAFKA_SH = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.sh"
URL = "/v1/messages/HST_Avtale/1"


def _kafka(command: str, run_dir: Path) -> str:
    done = subprocess.run(
        [str(KAFKA_SH), command, str(run_dir)], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A broker of this test's own, since the test stops it."""
    require_service("INTAKE_TEST_KAFKA_BOOTSTRAP", "Apache Kafka")
    run_dir = tmp_path / "kafka"
    bootstrap = _kafka("start", run_dir)
    yield bootstrap, run_dir
    _kafka("stop", run_dir)


async def test_broker_outage_gives_503_and_the_gateway_recovers(
    own_broker: tuple[str, Path], tmp_path: Path
) -> None:
    bootstrap, run_dir = own_broker
    settings = Settings(
        data_dir=tmp_path / "data",
        event_log="kafka",
        kafka_bootstrap=bootstrap,
        topic_prefix=f"outage{uuid.uuid4().hex[:8]}",
        produce_timeout_seconds=3,
        consumer_poll_seconds=0.05,
    )
    token = DevIssuer.load_or_create(settings).mint(UNIT, scopes=["intake:report"])
    auth = {"Authorization": f"Bearer {token}"}
    accepted: dict[str, str] = {}  # idempotency key -> receipt id
    refused: list[str] = []

    async def send(client: httpx.AsyncClient, n: int) -> httpx.Response:
        key = f"msg-{n}"
        response = await client.post(
            URL,
            json=appointment(f"obj-{n}", journal=f"J-{n}"),
            headers={**auth, "Idempotency-Key": key},
        )
        if response.status_code == 202:
            accepted[key] = response.json()["receipt_id"]
        else:
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "log_unavailable"
            assert int(response.headers["retry-after"]) > 0
            refused.append(key)
        return response

    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        for n in range(5):
            assert (await send(client, n)).status_code == 202

        await asyncio.to_thread(_kafka, "stop", run_dir)
        for n in range(5, 8):
            assert (await send(client, n)).status_code == 503
        assert (await client.get("/readyz")).status_code == 503

        await asyncio.to_thread(_kafka, "resume", run_dir)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        n = 8
        while (await send(client, n)).status_code != 202:  # a new message, same key each time
            assert loop.time() < deadline, "the gateway did not recover"
            refused.remove(f"msg-{n}")
            await asyncio.sleep(0.5)

        for key in list(refused):  # the client's retries with the same keys
            n = int(key.removeprefix("msg-"))
            while (await send(client, n)).status_code != 202:
                assert loop.time() < deadline, "retries kept failing"
                await asyncio.sleep(0.5)
        assert len(accepted) == 9
        for receipt_id in accepted.values():
            await wait_for_status(client, receipt_id, auth, {"applied"}, timeout=90)

        runtime = client._transport.app.state.runtime  # type: ignore[attr-defined]
        assert await runtime.state.count_events() == 9  # every message once, none twice
