"""The unit's delivery calendar, gaps in x-message-sequence, and the daily error list."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import httpx

from receiver.routes.completeness import sequence_gaps
from schemas.events import CARE_TIMEZONE
from tests.integration.helpers import appointment, example_message

URL = "/v1/messages/HST_Avtale/1"


async def test_calendar_and_sequence_gaps(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for n, sequence in enumerate((1, 2, 4, 7, 7)):
        response = await client.post(
            URL,
            json=appointment(f"seq-{sequence}"),
            headers={
                **auth,
                "x-message-sequence": str(sequence),
                "Idempotency-Key": f"delivery-{n}",
            },
        )
        assert response.status_code == 202
    body = (await client.get("/v1/completeness", headers=auth)).json()
    today = datetime.now(CARE_TIMEZONE).date().isoformat()
    assert body["days"] == [
        {
            "date": today,
            "message_type": "HST_Avtale",
            "messages": 5,
            "items": 5,
            "accepted": 5,
            "rejected": 0,
        }
    ]
    assert today not in body["days_without_delivery"]
    assert len(body["days_without_delivery"]) == 29
    assert body["sequence"] == {
        "first": 1,
        "last": 7,
        "missing_count": 3,
        "missing": [3, 5, 6],
        "duplicates": [7],
    }
    bad = await client.post(
        URL, json=appointment("x"), headers={**auth, "x-message-sequence": "zero"}
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    period = await client.get(
        "/v1/completeness", params={"from": "2025-02-01", "to": "2025-01-01"}, headers=auth
    )
    assert (period.status_code, period.json()["code"]) == (422, "invalid_period")


def test_sequence_gaps_without_numbers() -> None:
    assert sequence_gaps([])["missing_count"] == 0
    assert sequence_gaps([5])["missing"] == []


async def test_daily_error_list_as_json_and_csv(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await client.post(URL, json=example_message("invalid/item_errors.json"), headers=auth)
    today = datetime.now(CARE_TIMEZONE).date().isoformat()
    listed = (await client.get("/v1/errors", params={"date": today}, headers=auth)).json()
    rules = [(f["item_index"], f["rule_id"]) for f in listed["findings"]]
    assert (0, "STR-007") in rules
    assert all(f["path"].startswith("/0/avtale/") for f in listed["findings"])
    as_csv = await client.get("/v1/errors", params={"date": today, "format": "csv"}, headers=auth)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == len(listed["findings"])
    assert "15031245610" not in as_csv.text  # identifiers are not in the error list
    yesterday = (await client.get("/v1/errors", headers=auth)).json()
    assert yesterday["findings"] == []
