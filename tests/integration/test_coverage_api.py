"""Coverage over HTTP: obligations recorded by an administrator (history kept), read by quality
staff; coverage as JSON and as CSV for Norwegian Excel; bad input answered with a problem."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import httpx

from receiver.auth import DevIssuer
from schemas.events import CARE_TIMEZONE
from tests.conftest import UNIT
from tests.integration.test_review import rejected_message, review_auth, submit, wait_for_items

NEVER = "974150050"


async def test_obligations_and_coverage(
    client: httpx.AsyncClient, auth: dict[str, str], issuer: DevIssuer
) -> None:
    admin = {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:admin'])}"}
    reviewer = review_auth(issuer)
    today = datetime.now(CARE_TIMEZONE).date().isoformat()
    for unit in (UNIT, NEVER):
        added = await client.post(
            "/v1/obligations",
            json={"unit": unit, "message_type": "HST_Avtale", "valid_from": "2026-01-01"},
            headers=admin,
        )
        assert added.status_code == 201, added.text
    refused = await client.post(
        "/v1/obligations",
        json={"unit": "974150051", "message_type": "HST_Avtale", "valid_from": "2026-01-01"},
        headers=admin,
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_unit")
    by_reviewer = await client.post(
        "/v1/obligations",
        json={"unit": UNIT, "message_type": "HST_Avtale", "valid_from": "2026-01-01"},
        headers=reviewer,
    )
    assert by_reviewer.status_code == 403

    await submit(client, auth, rejected_message("C-1"))  # one item accepted: a delivery
    await wait_for_items(client, reviewer, 1)
    body = (
        await client.get(
            "/v1/coverage",
            params={"message_type": "HST_Avtale", "from": today, "to": today},
            headers=reviewer,
        )
    ).json()
    [day] = body["periods"]
    assert (day["expected_units"], day["delivered_units"], day["unit_coverage"]) == (2, 1, 0.5)
    assert [m["unit"] for m in body["missing"]] == [NEVER]
    as_csv = await client.get(
        "/v1/coverage.csv",
        params={"message_type": "HST_Avtale", "from": today, "to": today},
        headers=reviewer,
    )
    [row] = csv.DictReader(io.StringIO(as_csv.content.decode("utf-8-sig")), delimiter=";")
    assert row["Dekning enheter (%)"] == "50,0"
    unknown = await client.get("/v1/coverage", params={"message_type": "NOPE"}, headers=reviewer)
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_message_type")

    listed = (await client.get("/v1/obligations", headers=reviewer)).json()["obligations"]
    ended = await client.delete(f"/v1/obligations/{listed[0]['id']}", headers=admin)
    assert ended.status_code == 200
    history = (
        await client.get("/v1/obligations", params={"history": "true"}, headers=reviewer)
    ).json()["obligations"]
    assert len(history) == 2
    assert sum(1 for o in history if o["ended_at"]) == 1
