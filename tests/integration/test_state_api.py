"""Register data over HTTP: state now, as of a date, as known at a time; point-in-time
statistics; integrity findings reported on receipts after the fact."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from receiver.auth import DevIssuer
from tests.conftest import UNIT
from tests.integration.helpers import example_message, wait_for_status

IPLOS = "/v1/messages/IPLOS_Tjenestehendelse/1"
SERVICE = "TJ-4601-000812"


def _iplos_example() -> list[dict[str, Any]]:
    return example_message("valid/tjenesteforlop.json", "IPLOS_Tjenestehendelse/1")


@pytest.fixture
def staff(issuer: DevIssuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:state'])}"}


async def _report(client: httpx.AsyncClient, auth: dict[str, str], body: Any) -> dict[str, Any]:
    receipt = (await client.post(IPLOS, json=body, headers=auth)).json()
    return await wait_for_status(client, receipt["receipt_id"], auth, {"applied"})


async def test_state_now_and_as_of_a_date(
    client: httpx.AsyncClient, auth: dict[str, str], staff: dict[str, str]
) -> None:
    await _report(client, auth, _iplos_example())
    url = f"/v1/state/IPLOS_Tjenestehendelse/{SERVICE}"
    now = (await client.get(url, params={"unit": UNIT}, headers=staff)).json()
    assert now["state"]["tjenesteStatus"] == "ended"
    assert now["event_count"] == 5
    june = (
        await client.get(url, params={"unit": UNIT, "as_of": "2024-06-05"}, headers=staff)
    ).json()
    assert june["state"]["tjenesteStatus"] == "active"
    assert june["state"]["tjenesteutforer"]["lokalId"] == "SH-ARNA-PRIVAT"
    assert june["event_count"] == 2
    july = (
        await client.get(url, params={"unit": UNIT, "as_of": "2024-07-10"}, headers=staff)
    ).json()
    assert july["state"]["tjenesteStatus"] == "paused"
    before = await client.get(url, params={"unit": UNIT, "as_of": "2024-03-03"}, headers=staff)
    assert before.status_code == 404


async def test_state_as_known_at_a_time(
    client: httpx.AsyncClient, auth: dict[str, str], staff: dict[str, str]
) -> None:
    message = _iplos_example()
    block = message[0]
    first = [
        {
            **block,
            **{
                k: (v if k == "tjenesteStart" else [])
                for k, v in block.items()
                if isinstance(v, list)
            },
        }
    ]
    await _report(client, auth, first)
    known_then = datetime.now(UTC).isoformat()
    await asyncio.sleep(0.01)
    await _report(client, auth, message)
    url = f"/v1/state/IPLOS_Tjenestehendelse/{SERVICE}"
    then = (
        await client.get(url, params={"unit": UNIT, "known_at": known_then}, headers=staff)
    ).json()
    assert (then["state"]["tjenesteStatus"], then["event_count"]) == ("active", 1)
    now = (await client.get(url, params={"unit": UNIT}, headers=staff)).json()
    assert now["state"]["tjenesteStatus"] == "ended"
    naive = await client.get(
        url, params={"unit": UNIT, "known_at": "2024-01-01T00:00:00"}, headers=staff
    )
    assert naive.status_code == 422


@pytest.mark.parametrize(
    ("as_of", "params", "rows"),
    [
        (
            "2024-05-10",
            {"group_by": "tjenesteType", "status": "active"},
            [{"tjenesteType": "15", "count": 1}, {"tjenesteType": "21", "count": 1}],
        ),
        (
            "2024-07-10",
            {"group_by": "kommuneNr", "status": "active"},
            [{"kommuneNr": "4601", "count": 1}],
        ),
        (
            "2024-12-01",
            {"group_by": "tjenesteStatus"},
            [
                {"tjenesteStatus": "active", "count": 1},
                {"tjenesteStatus": "ended", "count": 2},
                {"tjenesteStatus": "paused", "count": 1},
            ],
        ),
    ],
)
async def test_point_in_time_statistics(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    staff: dict[str, str],
    as_of: str,
    params: dict[str, str],
    rows: list[dict[str, Any]],
) -> None:
    await _report(client, auth, _iplos_example())
    stats = (
        await client.get(
            "/v1/stats/IPLOS_Tjenestehendelse", params={"as_of": as_of, **params}, headers=staff
        )
    ).json()
    assert stats["rows"] == rows
    assert stats["total"] == sum(r["count"] for r in rows)


async def test_consultations_per_month(
    client: httpx.AsyncClient, auth: dict[str, str], staff: dict[str, str]
) -> None:
    body = example_message("valid/konsultasjoner.json", "HST_Konsultasjon/1")
    receipt = (await client.post("/v1/messages/HST_Konsultasjon/1", json=body, headers=auth)).json()
    await wait_for_status(client, receipt["receipt_id"], auth, {"applied"})
    stats = (
        await client.get("/v1/stats/HST_Konsultasjon", params={"group_by": "month"}, headers=staff)
    ).json()
    assert stats["total"] >= 1
    assert all(len(r["month"]) == 7 for r in stats["rows"])


async def test_state_endpoints_need_the_state_scope(
    client: httpx.AsyncClient, auth: dict[str, str], staff: dict[str, str]
) -> None:
    denied = await client.get("/v1/stats/IPLOS_Tjenestehendelse", headers=auth)
    assert (denied.status_code, denied.json()["code"]) == (403, "insufficient_scope")
    unknown = await client.get(
        "/v1/stats/IPLOS_Tjenestehendelse", params={"group_by": "fodselsNr"}, headers=staff
    )
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_dimension")
    no_type = await client.get("/v1/stats/Ukjent", headers=staff)
    assert no_type.status_code == 404


async def test_integrity_findings_reach_the_receipt(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    end_only = _iplos_example()
    block = end_only[0]
    for key, value in list(block.items()):
        if isinstance(value, list):
            block[key] = [] if key != "tjenesteSlutt" else [value[-1]]
    receipt = await _report(client, auth, end_only)
    [item] = receipt["items"]
    assert item["status"] == "applied"
    assert [(f["rule_id"], f["level"], f["path"]) for f in item["findings"]] == [
        ("INT-001", "integrity", "/0/tjenesteSlutt/0")
    ]
    # A late start re-folds the service: the finding goes away.
    start_only = _iplos_example()
    for key, value in list(start_only[0].items()):
        if isinstance(value, list):
            start_only[0][key] = [] if key != "tjenesteStart" else [value[0]]
    await _report(client, auth, start_only)
    again = (await client.get(f"/v1/receipts/{receipt['receipt_id']}", headers=auth)).json()
    assert again["items"][0]["findings"] == []
