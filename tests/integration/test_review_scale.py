"""The review over HTTP with more items than any one chunk: triage, the whole export, a bulk change
over a filter with its confirmation, the replay preview's pages, statistics under every filter
(HTML, JSON and CSV), and the access log's true counts."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import CollectorRegistry

from bench.review_data import PROBLEMS, seed
from receiver.app import create_app
from receiver.auth import DevIssuer
from tests.conftest import running_app
from tests.integration.test_review import review_auth
from wiring.settings import Settings

ITEMS = 2300  # more than two export chunks and bulk transactions (1000 each)


@dataclass
class Review:
    client: httpx.AsyncClient
    auth: dict[str, str]


@pytest.fixture
async def review(settings: Settings, issuer: DevIssuer) -> AsyncIterator[Review]:
    app = create_app(settings, registry=CollectorRegistry())
    async with running_app(app) as client:
        assert await seed(app.state.runtime.engines, ITEMS) == ITEMS
        yield Review(client, review_auth(issuer))


async def test_triage_lists_the_problems_with_their_meaning(review: Review) -> None:
    body = (await review.client.get("/v1/review/problems", headers=review.auth)).json()
    assert (body["total"], body["items"]) == (len(PROBLEMS), ITEMS)
    first = body["problems"][0]
    assert (first["rule_id"], first["title"], first["value"]) == ("KOD-001", "Ukjent kode", "XX")
    assert first["fix"]
    assert first["trend"] in ("rising", "falling", "steady")
    items = (
        await review.client.get(
            "/v1/review/items", params={"problem": first["problem"]}, headers=review.auth
        )
    ).json()
    assert items["total"] == first["items"]
    bad = await review.client.get(
        "/v1/review/items", params={"problem": "x' or 1=1"}, headers=review.auth
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_query")


async def test_the_export_has_every_row_of_the_filter(review: Review) -> None:
    export = await review.client.get("/v1/review/items.csv", headers=review.auth)
    assert export.status_code == 200
    assert export.headers["x-total-count"] == str(ITEMS)
    text = export.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert len(rows) == ITEMS
    assert len({r["Element-id"] for r in rows}) == ITEMS
    assert re.fullmatch(r"\d\d\.\d\d\.\d{4} \d\d:\d\d", rows[0]["Mottatt"])
    cgm = await review.client.get(
        "/v1/review/items.csv", params={"vendor": "cgm"}, headers=review.auth
    )
    cgm_rows = list(csv.DictReader(io.StringIO(cgm.content.decode("utf-8-sig")), delimiter=";"))
    assert {r["Leverandør"] for r in cgm_rows} == {"CGM"}
    [entry, *_] = (await review.client.get("/v1/review/access-log", headers=review.auth)).json()[
        "entries"
    ]
    assert (entry["action"], entry["item_count"]) == ("export", len(cgm_rows))


async def test_a_bulk_change_covers_the_whole_filter_once_confirmed(review: Review) -> None:
    everything: dict[str, str] = {}
    stale = await review.client.post(
        "/v1/review/bulk",
        json={"filter": everything, "status": "in_review", "expected": ITEMS - 1},
        headers=review.auth,
    )
    assert (stale.status_code, stale.json()["code"]) == (409, "selection_changed")
    listed = (await review.client.get("/v1/review/items", headers=review.auth)).json()
    assert listed["status_counts"] == {"new": ITEMS}
    done = await review.client.post(
        "/v1/review/bulk",
        json={"filter": everything, "status": "in_review", "expected": ITEMS},
        headers=review.auth,
    )
    assert done.json() == {"selected": ITEMS, "changed": ITEMS}
    listed = (await review.client.get("/v1/review/items", headers=review.auth)).json()
    assert listed["status_counts"] == {"in_review": ITEMS}


async def test_the_replay_preview_pages_through_the_filter(review: Review) -> None:
    first = (
        await review.client.post(
            "/v1/review/replay/preview",
            json={"filter": {}, "page_size": 500},
            headers=review.auth,
        )
    ).json()
    assert (first["total"], first["remaining"], len(first["checks"])) == (ITEMS, ITEMS - 500, 500)
    last = (
        await review.client.post(
            "/v1/review/replay/preview",
            json={"filter": {}, "page_size": 500, "page": 5},
            headers=review.auth,
        )
    ).json()
    assert (last["remaining"], len(last["checks"])) == (0, ITEMS - 2000)
    shown = {c["item_id"] for c in first["checks"]} | {c["item_id"] for c in last["checks"]}
    assert len(shown) == 500 + ITEMS - 2000


async def test_statistics_answer_under_every_filter(review: Review) -> None:
    problem = (await review.client.get("/v1/review/problems", headers=review.auth)).json()[
        "problems"
    ][0]["problem"]
    filters = [
        {"rule_id": "KOD-001"},
        {"level": "codelist"},
        {"problem": problem},
        {"vendor": "dips as"},
        {"software": "Visma Profil"},
        {"unit": "974152533"},
        {"message_type": "HST_Avtale", "version": "1"},
        {"status": "new"},
        {"rule_id": "IDN-001", "level": "identifier", "vendor": "CGM"},
    ]
    for query in filters:
        as_json = await review.client.get("/v1/review/stats", params=query, headers=review.auth)
        assert as_json.status_code == 200, (query, as_json.text)
        assert sum(d["rejected"] for d in as_json.json()["rejected_by_day"]) > 0, query
        as_csv = await review.client.get("/v1/review/stats.csv", params=query, headers=review.auth)
        assert as_csv.status_code == 200, query
        assert as_csv.content.decode("utf-8-sig").startswith("Regel;Regeltekst;")
        as_page = await review.client.get("/review/stats", params=query, headers=review.auth)
        assert as_page.status_code == 200, query
        assert "chart-by-day" in as_page.text


async def test_pages_name_the_count_and_ask_before_changing_a_filter(review: Review) -> None:
    triage = await review.client.get("/review/problems", headers=review.auth)
    assert triage.status_code == 200
    assert 'id="problem-items">2300<' in triage.text
    assert "Ukjent kode" in triage.text
    confirm = await review.client.post(
        "/review/bulk",
        data={"scope": "filter", "vendor": "Visma", "set_status": "wont_fix"},
        headers=review.auth,
    )
    assert confirm.status_code == 200
    visma = (
        await review.client.get("/v1/review/items", params={"vendor": "visma"}, headers=review.auth)
    ).json()["total"]
    assert f'id="confirm-count">{visma}<' in confirm.text
    unchanged = (await review.client.get("/v1/review/items", headers=review.auth)).json()
    assert unchanged["status_counts"] == {"new": ITEMS}
    done = await review.client.post(
        "/review/bulk",
        data={
            "scope": "filter",
            "vendor": "Visma",
            "set_status": "wont_fix",
            "confirmed": str(visma),
        },
        headers=review.auth,
    )
    assert done.status_code == 303
    assert "oppdatert" in done.headers["location"]
    counts = (await review.client.get("/v1/review/items", headers=review.auth)).json()
    assert counts["status_counts"] == {"new": ITEMS - visma, "wont_fix": visma}
    preview = await review.client.get("/review/replay", headers=review.auth)
    assert 'id="preview-remaining">2200<' in preview.text
    log = await review.client.get("/review/access-log", headers=review.auth)
    assert "vist av 2300" in log.text
