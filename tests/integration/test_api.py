"""The public HTTP contract in embedded mode, in-process: submit, receipts, bad input, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from eventlog.embedded import EmbeddedEventLog
from receiver.app import create_app
from receiver.auth import DevIssuer
from tests.conftest import OTHER_UNIT, UNIT, running_app
from tests.integration.helpers import appointment, example_message, records_in_log, wait_for_status
from wiring.settings import Settings

URL = "/v1/messages/HST_Avtale/1"


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


async def test_example_is_accepted_then_applied(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(URL, json=example_message(), headers=auth)
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert receipt["status"] == "accepted"
    assert receipt["stage"] == "validated"
    assert receipt["counts"] == {
        "items": 3,
        "accepted": 3,
        "rejected": 0,
        "applied": 0,
        "duplicate": 0,
    }
    assert response.headers["location"] == f"/v1/receipts/{receipt['receipt_id']}"
    assert response.headers["x-correlation-id"]
    final = await wait_for_status(client, receipt["receipt_id"], auth, {"applied"})
    assert [i["status"] for i in final["items"]] == ["applied"] * 3
    assert final["submission"]["unit_orgnr"] == UNIT


async def test_rejected_items_carry_findings_and_go_to_quarantine(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    response = await client.post(
        URL, json=example_message("invalid/item_errors.json"), headers=auth
    )
    assert response.status_code == 202
    receipt = response.json()
    assert receipt["status"] == "partially_accepted"
    assert [i["status"] for i in receipt["items"]] == ["rejected", "accepted", "rejected"]
    finding = receipt["items"][0]["findings"][0]
    assert finding == {
        "rule_id": "STR-007",
        "severity": "error",
        "level": "structure",
        "path": "/0/avtale/0/datoTid",
        "message_nb": finding["message_nb"],
        "message_en": finding["message_en"],
        "codelist_version": None,
    }
    final = await wait_for_status(client, receipt["receipt_id"], auth, {"partially_applied"})
    assert [i["status"] for i in final["items"]] == ["rejected", "applied", "rejected"]
    log = EmbeddedEventLog(settings.embedded_log_path)
    await log.start()
    try:
        assert sum((await log.end_offsets("intake.quarantine")).values()) == 2
    finally:
        await log.close()


async def test_same_idempotency_key_returns_the_same_receipt(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    headers = {**auth, "Idempotency-Key": "delivery-0001"}
    first = await client.post(URL, json=example_message(), headers=headers)
    second = await client.post(URL, json=example_message(), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["receipt_id"] == second.json()["receipt_id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert await records_in_log(settings) == 3

    changed = example_message()
    changed[0]["avtale"][0]["oppmoteStatus"] = 2
    conflict = await client.post(URL, json=changed, headers=headers)
    _problem(conflict, 409, "idempotency_conflict")
    assert await records_in_log(settings) == 3


async def test_same_body_without_key_is_recognised(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    body = orjson.dumps(example_message())
    headers = {**auth, "Content-Type": "application/json"}
    first = await client.post(URL, content=body, headers=headers)
    second = await client.post(URL, content=body, headers=headers)
    assert first.json()["receipt_id"] == second.json()["receipt_id"]
    assert await records_in_log(settings) == 3


async def test_same_body_under_a_new_key_is_applied_once(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    first = await client.post(URL, json=example_message(), headers={**auth, "Idempotency-Key": "a"})
    second = await client.post(
        URL, json=example_message(), headers={**auth, "Idempotency-Key": "b"}
    )
    assert first.json()["receipt_id"] != second.json()["receipt_id"]
    await wait_for_status(client, first.json()["receipt_id"], auth, {"applied"})
    final = await wait_for_status(client, second.json()["receipt_id"], auth, {"applied"})
    assert final["counts"]["duplicate"] == 3


async def test_dry_run_validates_and_stores_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    response = await client.post(
        URL,
        params={"dry_run": "true"},
        json=example_message("invalid/item_errors.json"),
        headers=auth,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "partially_accepted"
    assert response.json()["stage"] == "dry_run"
    assert await records_in_log(settings) == 0
    missing = await client.get(f"/v1/receipts/{response.json()['receipt_id']}", headers=auth)
    _problem(missing, 404, "not_found")


async def test_atomic_refuses_the_whole_message_when_an_item_fails(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    response = await client.post(
        URL,
        params={"atomic": "true"},
        json=example_message("invalid/item_errors.json"),
        headers=auth,
    )
    body = _problem(response, 422, "rejected_atomic")
    assert isinstance(body["receipt"], dict)
    assert await records_in_log(settings) == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'[{"orgNr": ', "application/json", 400, "malformed_json"),
        (b"", "application/json", 400, "malformed_json"),
        (b"\xff\xfe[]", "application/json", 400, "malformed_json"),
        (b"[]", "text/plain", 415, "unsupported_media_type"),
        (b"[]", "application/json", 422, "no_items"),
        (b'[{"orgNr": "974152533", "kommuneNr": "0301"}]', "application/json", 422, "no_items"),
        (b'{"not": "a list"}', "application/json", 422, "invalid_message"),
        (
            b'[{"orgNr": "97415253", "kommuneNr": "0301", "avtale": []}]',
            "application/json",
            422,
            "invalid_message",
        ),
    ],
)
async def test_bad_input_is_a_problem_and_writes_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    settings: Settings,
    content: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = await client.post(
        URL, content=content, headers={**auth, "Content-Type": content_type}
    )
    _problem(response, status, code)
    assert await records_in_log(settings) == 0


async def test_a_nul_character_refuses_the_message_and_writes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    """PostgreSQL cannot store U+0000 in text or jsonb: such a message used to pass validation and
    fail in the store with a 500. Now it is refused with the paths of the offending strings."""
    message = appointment("AVT-nul\x00-1")
    message[0]["avtale"][0]["ekstra\x00felt"] = "x"
    response = await client.post(
        URL, content=orjson.dumps(message), headers={**auth, "Content-Type": "application/json"}
    )
    body = _problem(response, 422, "invalid_message")
    findings = body["findings"]
    assert isinstance(findings, list)
    assert {(f["rule_id"], f["path"]) for f in findings if f["rule_id"] == "STR-011"} == {
        ("STR-011", "/0/avtale/0/avtaleId"),
        ("STR-011", "/0/avtale/0/person/personId"),  # the helper derives it from the id
        ("STR-011", "/0/avtale/0/ekstra\\u0000felt"),
    }
    assert await records_in_log(settings) == 0
    # The six characters backslash, u, 0, 0, 0, 0 are ordinary text.
    ordinary = orjson.dumps(appointment("AVT-\\u0000-2"))
    assert b"\\\\u0000" in ordinary
    accepted = await client.post(
        URL, content=ordinary, headers={**auth, "Content-Type": "application/json"}
    )
    assert accepted.status_code == 202, accepted.text


async def test_unknown_message_type_and_version(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    _problem(
        await client.post("/v1/messages/HST_Ukjent/1", json=example_message(), headers=auth),
        404,
        "unknown_message_type",
    )
    _problem(
        await client.post("/v1/messages/HST_Avtale/9", json=example_message(), headers=auth),
        404,
        "unknown_message_type",
    )
    _problem(
        await client.post("/v1/messages/HST_Avtale/x", json=example_message(), headers=auth),
        422,
        "invalid_request",
    )


async def test_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", max_body_bytes=2048)
    token = DevIssuer.load_or_create(settings).mint(UNIT, scopes=["intake:report"])
    app = create_app(settings, registry=CollectorRegistry())
    async with running_app(app) as client:
        big = example_message()
        big[0]["avtale"] *= 20
        response = await client.post(URL, json=big, headers={"Authorization": f"Bearer {token}"})
        _problem(response, 413, "payload_too_large")

        async def chunks() -> AsyncIterator[
            bytes
        ]:  # no Content-Length: the limit holds while streaming
            for _ in range(10):
                yield b" " * 1024

        streamed = await client.post(
            URL,
            content=chunks(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        _problem(streamed, 413, "payload_too_large")
        assert await records_in_log(settings) == 0


async def test_requests_without_a_valid_token_get_401(
    client: httpx.AsyncClient, issuer: DevIssuer, settings: Settings
) -> None:
    body = example_message()
    _problem(await client.post(URL, json=body), 401, "unauthorized")
    _problem(
        await client.post(URL, json=body, headers={"Authorization": "Bearer nonsense"}),
        401,
        "unauthorized",
    )
    _problem(
        await client.post(URL, json=body, headers={"Authorization": "Basic dXNlcjpwdw=="}),
        401,
        "unauthorized",
    )
    expired = issuer.mint(UNIT, scopes=["intake:report"], lifetime_seconds=-120)
    response = await client.post(URL, json=body, headers={"Authorization": f"Bearer {expired}"})
    _problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    no_scope = issuer.mint(UNIT, scopes=["intake:state"])
    _problem(
        await client.post(URL, json=body, headers={"Authorization": f"Bearer {no_scope}"}),
        403,
        "insufficient_scope",
    )
    assert await records_in_log(settings) == 0


async def test_a_unit_cannot_report_for_another(
    client: httpx.AsyncClient, issuer: DevIssuer, settings: Settings
) -> None:
    other = issuer.mint(OTHER_UNIT, scopes=["intake:report"])
    response = await client.post(
        URL, json=example_message(), headers={"Authorization": f"Bearer {other}"}
    )
    _problem(response, 403, "unit_mismatch")
    assert await records_in_log(settings) == 0


async def test_a_unit_cannot_read_another_units_receipt(
    client: httpx.AsyncClient, auth: dict[str, str], issuer: DevIssuer
) -> None:
    receipt = (await client.post(URL, json=example_message(), headers=auth)).json()
    other = issuer.mint(OTHER_UNIT, scopes=["intake:report"])
    response = await client.get(
        f"/v1/receipts/{receipt['receipt_id']}", headers={"Authorization": f"Bearer {other}"}
    )
    _problem(response, 404, "not_found")


async def test_last_known_state_follows_the_stream(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    from tests.integration.helpers import wait_for_status as wait

    first = (await client.post(URL, json=appointment("A-1", status=1), headers=auth)).json()
    second = (await client.post(URL, json=appointment("A-1", status=3), headers=auth)).json()
    await wait(client, first["receipt_id"], auth, {"applied"})
    await wait(client, second["receipt_id"], auth, {"applied"})
    runtime = client._transport.app.state.runtime  # type: ignore[attr-defined]
    state = await runtime.state.get_object(UNIT, "HST_Avtale", "A-1")
    assert state is not None
    assert state.state["oppmoteStatus"] == 3
    assert state.event_count == 2
    deletion = [
        {
            "orgNr": UNIT,
            "kommuneNr": "0301",
            "slettAvtale": [{"avtaleId": "A-1", "erSlettet": True}],
        }
    ]
    third = (await client.post(URL, json=deletion, headers=auth)).json()
    await wait(client, third["receipt_id"], auth, {"applied"})
    state = await runtime.state.get_object(UNIT, "HST_Avtale", "A-1")
    assert state is not None
    assert state.deleted is True


async def test_operations_endpoints(
    client: httpx.AsyncClient, auth: dict[str, str], registry: CollectorRegistry
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    for _ in range(100):
        if ready.status_code == 200:
            break
        ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "event_log": "ok",
        "store": "ok",
        "consumer:projector": "ok",
        "consumer:webhooks": "ok",
        "consumer:quarantine": "ok",
    }
    receipt = (
        await client.post(URL, json=example_message("invalid/item_errors.json"), headers=auth)
    ).json()
    await wait_for_status(client, receipt["receipt_id"], auth, {"partially_applied"})
    text = (await client.get("/metrics")).text
    assert (
        'intake_items_total{message_type="HST_Avtale",outcome="accepted",version="1"} 1.0' in text
    )
    assert (
        'intake_items_total{message_type="HST_Avtale",outcome="rejected",version="1"} 2.0' in text
    )
    assert 'intake_findings_total{rule_id="STR-007",severity="error"} 1.0' in text
    assert 'intake_events_applied_total{message_type="HST_Avtale",result="applied"} 1.0' in text
    assert 'route="/v1/messages/{message_type}/{version}"' in text
    assert "intake_produce_duration_seconds_count 1.0" in text
    assert "intake_apply_duration_seconds_count" in text
    assert (
        'intake_consumer_lag_records{consumer="projector",topic="intake.accepted.HST_Avtale.v1"}'
        in text
    )
    assert UNIT not in text  # no unit ids as labels


async def test_published_models_and_rules_need_no_token(client: httpx.AsyncClient) -> None:
    types = (await client.get("/v1/message-types")).json()
    assert {"message_type": "HST_Avtale", "version": 1}.items() <= types[0].items()
    model = (await client.get("/v1/message-types/HST_Avtale/1")).json()
    assert model["avro_schema"]["type"] == "array"
    assert any(e["valid"] for e in model["examples"])
    rules = (await client.get("/v1/rules")).json()
    assert "STR-001" in {r["rule_id"] for r in rules}
    openapi = (await client.get("/openapi.json")).json()
    assert "/v1/messages/{message_type}/{version}" in openapi["paths"]
