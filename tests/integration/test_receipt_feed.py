"""The unit's receipt feed: ordering, cursors, long-poll, bad cursors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from receiver.auth import DevIssuer
from tests.conftest import OTHER_UNIT
from tests.integration.helpers import appointment, wait_for_status

URL = "/v1/messages/HST_Avtale/1"


async def _drain(
    client: httpx.AsyncClient, auth: dict[str, str], cursor: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    changes: list[dict[str, Any]] = []
    while True:
        params = {"limit": "2"} | ({"after": cursor} if cursor else {})
        page = (await client.get("/v1/receipts", params=params, headers=auth)).json()
        changes += page["changes"]
        if not page["changes"]:
            return changes, page["cursor"]
        cursor = page["cursor"]


async def test_feed_shows_every_change_in_order_and_resumes_from_a_cursor(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    ids = []
    for n in range(3):
        receipt = (await client.post(URL, json=appointment(f"F-{n}"), headers=auth)).json()
        ids.append(receipt["receipt_id"])
        await wait_for_status(client, receipt["receipt_id"], auth, {"applied"})
    changes, cursor = await _drain(client, auth)
    assert [(c["receipt"]["receipt_id"], c["kind"]) for c in changes] == [
        (rid, kind) for rid in ids for kind in ("validated", "applied")
    ]
    assert changes[-1]["receipt"]["status"] == "applied"
    more = (await client.post(URL, json=appointment("F-3"), headers=auth)).json()
    await wait_for_status(client, more["receipt_id"], auth, {"applied"})
    newer, _ = await _drain(client, auth, cursor)
    assert {c["receipt"]["receipt_id"] for c in newer} == {more["receipt_id"]}


async def test_long_poll_returns_as_soon_as_something_changes(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    _, cursor = await _drain(client, auth)
    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(
        client.get("/v1/receipts", params={"after": cursor, "wait": "10"}, headers=auth)
    )
    await asyncio.sleep(0.3)
    await client.post(URL, json=appointment("LP-1"), headers=auth)
    page = (await poll).json()
    assert page["changes"]
    assert loop.time() - started < 5
    empty = await client.get(
        "/v1/receipts", params={"after": page["cursor"], "wait": "0.2"}, headers=auth
    )
    assert empty.json()["cursor"]


async def test_bad_or_foreign_cursors_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], issuer: DevIssuer
) -> None:
    await client.post(URL, json=appointment("C-1"), headers=auth)
    _, cursor = await _drain(client, auth)
    for bad in ("nonsense", "abc.def", cursor[:-2] + "xx"):
        response = await client.get("/v1/receipts", params={"after": bad}, headers=auth)
        assert (response.status_code, response.json()["code"]) == (400, "invalid_cursor")
    other = {"Authorization": f"Bearer {issuer.mint(OTHER_UNIT, scopes=['intake:report'])}"}
    foreign = await client.get("/v1/receipts", params={"after": cursor}, headers=other)
    assert (foreign.status_code, foreign.json()["code"]) == (400, "invalid_cursor")
    own, _ = await _drain(client, other)
    assert own == []  # another unit's receipts never show
