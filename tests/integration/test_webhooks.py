"""Webhooks against a real HTTP receiver on loopback: signatures, retries, parking, and a
receiver that hangs without slowing the pipeline down."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.auth import DevIssuer
from tests.conftest import UNIT, running_app
from tests.integration.helpers import appointment, wait_for_status
from tests.servers import Receiver
from wiring.settings import Settings

SECRET = "s3cret-for-tests-0123456789-abcdefghij"


@pytest.fixture
async def fast_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        data_dir=tmp_path / "data",
        consumer_poll_seconds=0.05,
        webhook_poll_seconds=0.05,
        webhook_backoff_seconds=0.05,
        webhook_max_attempts=3,
        webhook_timeout_seconds=0.5,
    )
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        yield client


@pytest.fixture
def tokens(fast_client: httpx.AsyncClient) -> dict[str, dict[str, str]]:
    runtime = fast_client._transport.app.state.runtime  # type: ignore[attr-defined]
    issuer = DevIssuer.load_or_create(runtime.settings)
    return {
        scope: {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=[f'intake:{scope}'])}"}
        for scope in ("report", "admin")
    }


def _verify(headers: dict[str, str], body: bytes) -> None:
    fields = dict(part.split("=", 1) for part in headers["intake-signature"].split(","))
    expected = hmac.new(
        SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert abs(time.time() - int(fields["t"])) < 60


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_signed_deliveries_reach_a_real_receiver(
    fast_client: httpx.AsyncClient, tokens: dict[str, dict[str, str]], receiver: Receiver
) -> None:
    auth = tokens["report"]
    put = await fast_client.put(
        "/v1/webhook", json={"url": receiver.url, "secret": SECRET}, headers=auth
    )
    assert put.status_code == 200, put.text
    assert (await fast_client.get("/v1/webhook", headers=auth)).json() == {"url": receiver.url}
    receipt = (
        await fast_client.post("/v1/messages/HST_Avtale/1", json=appointment("W-1"), headers=auth)
    ).json()
    await wait_for_status(fast_client, receipt["receipt_id"], auth, {"applied"})

    def applied_pushed() -> bool:
        return any(orjson.loads(b)["receipt"]["status"] == "applied" for _, b in receiver.received)

    await _until(applied_pushed)
    for headers, body in receiver.received:
        _verify(headers, body)
        assert orjson.loads(body)["receipt"]["receipt_id"] == receipt["receipt_id"]
    # A tampered body would not verify.
    headers, body = receiver.received[0]
    with pytest.raises(AssertionError):
        _verify(headers, body + b" ")


async def test_failures_are_retried_then_parked_and_can_be_requeued(
    fast_client: httpx.AsyncClient, tokens: dict[str, dict[str, str]], receiver: Receiver
) -> None:
    auth, admin = tokens["report"], tokens["admin"]
    receiver.statuses = [500, 503] + [500] * 3  # the first delivery succeeds on its third try
    await fast_client.put("/v1/webhook", json={"url": receiver.url, "secret": SECRET}, headers=auth)
    receipt = (
        await fast_client.post("/v1/messages/HST_Avtale/1", json=appointment("W-2"), headers=auth)
    ).json()
    await wait_for_status(fast_client, receipt["receipt_id"], auth, {"applied"})

    async def deliveries(status: str) -> list[dict[str, Any]]:
        listed = await fast_client.get(
            "/v1/admin/webhook-deliveries", params={"status": status}, headers=admin
        )
        result: list[dict[str, Any]] = listed.json()
        return result

    for _ in range(300):
        delivered, parked = await deliveries("delivered"), await deliveries("parked")
        if len(delivered) + len(parked) == 2:
            break
        await asyncio.sleep(0.05)
    assert [d["attempts"] for d in delivered] == [3]
    assert [(d["attempts"], d["last_error"]) for d in parked] == [(3, "HTTP 500")]
    retry = await fast_client.post(
        f"/v1/admin/webhook-deliveries/{parked[0]['delivery_id']}/retry", headers=admin
    )
    assert retry.status_code == 202
    for _ in range(300):
        if len(await deliveries("delivered")) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(await deliveries("delivered")) == 2
    denied = await fast_client.get("/v1/admin/webhook-deliveries", headers=auth)
    assert denied.status_code == 403


async def test_a_hanging_receiver_does_not_slow_the_pipeline(
    fast_client: httpx.AsyncClient, tokens: dict[str, dict[str, str]], receiver: Receiver
) -> None:
    auth = tokens["report"]
    receiver.hang_seconds = 5
    await fast_client.put("/v1/webhook", json={"url": receiver.url, "secret": SECRET}, headers=auth)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(5):
        receipt = (
            await fast_client.post(
                "/v1/messages/HST_Avtale/1", json=appointment(f"H-{n}"), headers=auth
            )
        ).json()
        await wait_for_status(fast_client, receipt["receipt_id"], auth, {"applied"})
    assert loop.time() - started < 4  # the projector and the feed did not wait for the hook
    await _until(lambda: len(receiver.received) >= 1)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "http://epj.example/hook", "secret": SECRET}, "webhook_url_not_https"),
        ({"url": "ftp://127.0.0.1/hook", "secret": SECRET}, "webhook_url_not_https"),
        ({"url": "https://epj.example/hook", "secret": "short"}, "webhook_secret_too_short"),
    ],
)
async def test_bad_webhooks_are_refused(
    fast_client: httpx.AsyncClient,
    tokens: dict[str, dict[str, str]],
    body: dict[str, str],
    code: str,
) -> None:
    response = await fast_client.put("/v1/webhook", json=body, headers=tokens["report"])
    assert (response.status_code, response.json()["code"]) == (422, code)
    gone = await fast_client.delete("/v1/webhook", headers=tokens["report"])
    assert gone.status_code == 404
