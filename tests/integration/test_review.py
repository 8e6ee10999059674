"""The review API end to end on the embedded adapters: rejected items reach the review index,
filters, masking and reveal with the access log, workflow, bulk changes, replay after a code-list
fix (with the sender's receipt updated), statistics, completeness and CSV."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from intake.cli import app
from receiver.auth import DevIssuer
from tests.conftest import OTHER_UNIT, UNIT
from tests.integration.helpers import appointment, wait_for_status
from wiring.settings import Settings

URL = "/v1/messages/HST_Avtale/1"
FNR = "15031245610"
SENDER = {
    "x-vendor-name": "Journalsystemer AS",
    "x-software-name": "Journal",
    "x-software-version": "9.1",
}
runner = CliRunner()


def review_auth(issuer: DevIssuer, subject: str = "kari.kvalitet") -> dict[str, str]:
    token = issuer.mint(UNIT, scopes=["intake:review"], subject=subject)
    return {"Authorization": f"Bearer {token}"}


def rejected_message(object_id: str, *, unit: str = UNIT) -> list[dict[str, Any]]:
    """One valid appointment and one with a consultation type not in the code list."""
    message = appointment(f"{object_id}-ok", unit=unit)
    bad = appointment(object_id, unit=unit)[0]["avtale"][0]
    bad["konsultasjonType"] = "NY"
    message[0]["avtale"].append(bad)
    return message


async def import_corrected_codelist(settings: Settings, tmp_path: Path) -> None:
    """Import the consultation-type list with the code NY added, as an operator would (the CLI
    runs its own event loop: call it from a thread, as if from another process)."""
    tsv = tmp_path / "konsultasjonstype.tsv"
    tsv.write_text(
        "code\tdisplay\tactive\teffective\nPQ\tPlanlagt\t1\t2020-01-01\n"
        "NY\tNy type\t1\t2024-01-01\n",
        encoding="utf-8",
    )
    imported = await asyncio.to_thread(
        runner.invoke,
        app,
        ["codelists", "import", str(tsv), "--id", "hst-konsultasjonstype",
         "--title", "KPR konsultasjonstype", "--data-dir", str(settings.data_dir)],
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output


async def wait_for_items(
    client: httpx.AsyncClient, headers: dict[str, str], count: int, **query: str
) -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = (
            await client.get("/v1/review/items", params=query, headers=headers)
        ).json()
        if body.get("total", 0) >= count:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"the review index never reached {count} items: {body}")


async def submit(
    client: httpx.AsyncClient, auth: dict[str, str], message: list[dict[str, Any]]
) -> dict[str, Any]:
    response = await client.post(URL, json=message, headers={**auth, **SENDER})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_review_needs_the_review_scope(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    missing = await client.get("/v1/review/items")
    assert missing.status_code == 401
    assert missing.json()["code"] == "unauthorized"
    reporter = await client.get("/v1/review/items", headers=auth)
    assert reporter.status_code == 403
    assert reporter.json()["code"] == "insufficient_scope"


async def test_rejected_items_are_listed_filtered_and_masked(
    client: httpx.AsyncClient, auth: dict[str, str], issuer: DevIssuer
) -> None:
    reviewer = review_auth(issuer)
    await submit(client, auth, rejected_message("R-1"))
    broken = appointment("R-2")
    broken[0]["avtale"][0]["person"]["fodselsNr"] = "15031245611"  # wrong control digit
    await submit(client, auth, broken)

    listing = await wait_for_items(client, reviewer, 2)
    assert listing["total"] == 2
    assert listing["status_counts"] == {"new": 2}
    assert FNR not in str(listing)
    assert "15031245611" not in str(listing)
    by_rule = (
        await client.get("/v1/review/items", params={"rule_id": "KOD-001"}, headers=reviewer)
    ).json()
    assert [i["object_id"] for i in by_rule["items"]] == ["R-1"]
    assert by_rule["items"][0]["vendor"] == "Journalsystemer AS"
    by_level = (
        await client.get("/v1/review/items", params={"level": "identifier"}, headers=reviewer)
    ).json()
    assert [i["object_id"] for i in by_level["items"]] == ["R-2"]
    nobody = (
        await client.get("/v1/review/items", params={"unit": OTHER_UNIT}, headers=reviewer)
    ).json()
    assert nobody["total"] == 0
    bad = await client.get("/v1/review/items", params={"status": "open"}, headers=reviewer)
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_query"

    item_id = by_level["items"][0]["item_id"]
    detail = (await client.get(f"/v1/review/items/{item_id}", headers=reviewer)).json()
    assert detail["item"]["person"]["fodselsNr"] == "•" * 11
    assert "/person/fodselsNr" in detail["masked_paths"]
    assert "15031245611" not in str(detail)
    assert {f["rule_id"] for f in detail["findings"]} == {"IDN-001"}
    assert detail["findings"][0]["item_pointer"] == "/person/fodselsNr"
    assert detail["receipt"]["status"] == "rejected"
    assert detail["resubmitted_at"] is None

    refused = await client.post(
        f"/v1/review/items/{item_id}/reveal",
        json={"path": "/person/fodselsNr", "reason": ""},
        headers=reviewer,
    )
    assert refused.status_code == 422
    revealed = await client.post(
        f"/v1/review/items/{item_id}/reveal",
        json={"path": "/person/fodselsNr", "reason": "Kontroll av kontrollsiffer"},
        headers=reviewer,
    )
    assert revealed.json()["value"] == "15031245611"
    log = (
        await client.get("/v1/review/access-log", params={"item_id": item_id}, headers=reviewer)
    ).json()["entries"]
    assert [(e["action"], e["actor"]) for e in log] == [
        ("reveal", "kari.kvalitet"),
        ("view", "kari.kvalitet"),
    ]
    assert log[0]["path"] == "item:/person/fodselsNr"
    assert log[0]["reason"] == "Kontroll av kontrollsiffer"


async def test_workflow_notes_and_bulk_changes(
    client: httpx.AsyncClient, auth: dict[str, str], issuer: DevIssuer
) -> None:
    reviewer = review_auth(issuer)
    for n in range(3):
        await submit(client, auth, rejected_message(f"W-{n}"))
    items = (await wait_for_items(client, reviewer, 3))["items"]
    first = items[0]["item_id"]

    changed = await client.patch(
        f"/v1/review/items/{first}",
        json={"status": "in_review", "assignee": "ola"},
        headers=reviewer,
    )
    assert changed.json()["status"] == "in_review"
    assert changed.json()["assignee"] == "ola"
    wrong = await client.patch(
        f"/v1/review/items/{first}", json={"status": "done"}, headers=reviewer
    )
    assert wrong.status_code == 422
    note = await client.post(
        f"/v1/review/items/{first}/notes", json={"text": "Ringt leverandøren"}, headers=reviewer
    )
    assert note.status_code == 201
    unknown = await client.post(
        "/v1/review/items/00000000-0000-0000-0000-000000000000/notes",
        json={"text": "x"},
        headers=reviewer,
    )
    assert unknown.status_code == 404

    history = (await client.get(f"/v1/review/items/{first}", headers=reviewer)).json()["history"]
    assert [(h["kind"], h["from"], h["to"], h["text"]) for h in history] == [
        ("status", "new", "in_review", None),
        ("assignee", None, "ola", None),
        ("note", None, None, "Ringt leverandøren"),
    ]
    assert {h["actor"] for h in history} == {"kari.kvalitet"}

    bulk = await client.post(
        "/v1/review/bulk",
        json={"filter": {"status": "new"}, "status": "awaiting_resubmission", "note": "Venter"},
        headers=reviewer,
    )
    assert bulk.json() == {"selected": 2, "changed": 2}
    counts = (await client.get("/v1/review/items", headers=reviewer)).json()["status_counts"]
    assert counts == {"in_review": 1, "awaiting_resubmission": 2}
    nothing = await client.post("/v1/review/bulk", json={"status": "new"}, headers=reviewer)
    assert nothing.status_code == 422


async def test_replay_after_a_code_list_fix_updates_the_senders_receipt(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    issuer: DevIssuer,
    settings: Settings,
    tmp_path: Path,
) -> None:
    reviewer = review_auth(issuer)
    receipt = await submit(client, auth, rejected_message("RP-1"))
    await wait_for_status(client, receipt["receipt_id"], auth, {"partially_applied"})
    await wait_for_items(client, reviewer, 1)
    selection = {"filter": {"rule_id": "KOD-001"}}

    before = (
        await client.post("/v1/review/replay/preview", json=selection, headers=reviewer)
    ).json()
    assert before["counts"] == {"fails": 1}
    assert [f["rule_id"] for f in before["checks"][0]["findings"]] == ["KOD-001"]
    assert before["checks"][0]["findings"][0]["path"].startswith("/0/avtale/1/")

    await import_corrected_codelist(settings, tmp_path)

    preview = (
        await client.post("/v1/review/replay/preview", json=selection, headers=reviewer)
    ).json()
    assert preview["counts"] == {"passes": 1}
    done = (await client.post("/v1/review/replay", json=selection, headers=reviewer)).json()
    assert len(done["replayed"]) == 1
    event_id = done["replayed"][0]["event_id"]

    updated = await wait_for_status(client, receipt["receipt_id"], auth, {"applied"})
    item = updated["items"][1]
    assert (item["status"], item["event_id"]) == ("applied", event_id)
    assert updated["counts"]["rejected"] == 0
    feed = (await client.get("/v1/receipts", headers=auth)).json()
    assert "replayed" in [c["kind"] for c in feed["changes"]]

    again = (await client.post("/v1/review/replay", json=selection, headers=reviewer)).json()
    assert again["counts"] == {"already_replayed": 1}
    assert again["replayed"] == []
    listing = (await client.get("/v1/review/items", headers=reviewer)).json()
    assert listing["items"][0]["status"] == "resolved"
    assert listing["items"][0]["replay_event_id"] == event_id
    state = await client.get(
        "/v1/state/HST_Avtale/RP-1",
        params={"unit": UNIT},
        headers={"Authorization": "Bearer " + issuer.mint(UNIT, scopes=["intake:state"])},
    )
    assert state.status_code == 200, state.text
    assert state.json()["state"]["konsultasjonType"] == "NY"


async def test_statistics_completeness_and_csv(
    client: httpx.AsyncClient, auth: dict[str, str], issuer: DevIssuer
) -> None:
    reviewer = review_auth(issuer)
    await submit(client, auth, rejected_message("S-1"))
    await submit(client, auth, rejected_message("S-2"))
    await wait_for_items(client, reviewer, 2)

    stats = (await client.get("/v1/review/stats", headers=reviewer)).json()
    assert stats["top_rules"] == [{"rule_id": "KOD-001", "title": "Ukjent kode", "rejected": 2}]
    assert stats["by_unit"] == [{"unit": UNIT, "rejected": 2}]
    assert stats["by_vendor"] == [{"vendor": "Journalsystemer AS", "rejected": 2}]
    assert sum(d["rejected"] for d in stats["rejected_by_day"]) == 2
    assert sum(d["items"] for d in stats["received_by_day"]) == 4
    assert len(stats["days"]) == 30

    completeness = (await client.get("/v1/review/completeness", headers=reviewer)).json()
    [unit] = completeness["units"]
    assert unit["unit"] == UNIT
    assert sum(unit["messages"]) == 2
    assert len(unit["silent_days"]) == 13

    export = await client.get("/v1/review/items.csv", headers=reviewer)
    assert export.headers["content-type"].startswith("text/csv")
    assert export.content.startswith(b"\xef\xbb\xbf")  # the BOM Norwegian Excel needs
    rows = list(csv.DictReader(io.StringIO(export.text.lstrip("\ufeff")), delimiter=";"))
    assert sorted(r["Objekt-id"] for r in rows) == ["S-1", "S-2"]
    assert {r["Status"] for r in rows} == {"Ny"}
    assert {r["Regler"] for r in rows} == {"KOD-001"}
    assert rows[0]["Feil"]  # the rule's title beside its id
    assert FNR not in export.text
    log = (await client.get("/v1/review/access-log", headers=reviewer)).json()["entries"]
    assert log[0]["action"] == "export"
    assert log[0]["item_count"] == 2

    per_rule = await client.get("/v1/review/stats.csv", headers=reviewer)
    assert per_rule.text.splitlines()[1].startswith("KOD-001;")
    assert ";2;" in per_rule.text.splitlines()[1]
    too_long = await client.get(
        "/v1/review/stats", params={"from": "2020-01-01", "to": "2024-01-01"}, headers=reviewer
    )
    assert too_long.status_code == 422


async def test_replay_from_the_command_line(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    issuer: DevIssuer,
    settings: Settings,
    tmp_path: Path,
) -> None:
    reviewer = review_auth(issuer)
    receipt = await submit(client, auth, rejected_message("CLI-1"))
    await wait_for_items(client, reviewer, 1)
    common = ["replay", "--rule-id", "KOD-001", "--data-dir", str(settings.data_dir)]

    shown = await asyncio.to_thread(runner.invoke, app, common)
    assert shown.exit_code == 0, shown.output
    assert "fails" in shown.output
    refused = await asyncio.to_thread(runner.invoke, app, [*common, "--status", "open"])
    assert refused.exit_code == 2

    await import_corrected_codelist(settings, tmp_path)
    applied = await asyncio.to_thread(
        runner.invoke, app, [*common, "--apply", "--actor", "nattjobb"]
    )
    assert applied.exit_code == 0, applied.output
    assert "passes" in applied.output

    updated = await wait_for_status(client, receipt["receipt_id"], auth, {"applied"})
    assert updated["counts"]["rejected"] == 0
    log = (await client.get("/v1/review/access-log", headers=reviewer)).json()["entries"]
    assert (log[0]["action"], log[0]["actor"]) == ("replay", "cli:nattjobb")


async def test_a_corrected_resubmission_shows_on_the_item(
    client: httpx.AsyncClient, auth: dict[str, str], issuer: DevIssuer
) -> None:
    reviewer = review_auth(issuer)
    broken = appointment("RS-1")
    broken[0]["avtale"][0]["person"]["fodselsNr"] = "15031245611"
    await submit(client, auth, broken)
    [item] = (await wait_for_items(client, reviewer, 1))["items"]
    fixed = await submit(client, auth, appointment("RS-1"))
    await wait_for_status(client, fixed["receipt_id"], auth, {"applied"})
    detail = (await client.get(f"/v1/review/items/{item['item_id']}", headers=reviewer)).json()
    assert detail["resubmitted_at"] is not None
    assert detail["resubmitted_at"] > detail["received_at"]


async def test_pages_sign_in_guard_forms_and_answer_in_norwegian(
    client: httpx.AsyncClient, auth: dict[str, str], issuer: DevIssuer
) -> None:
    reviewer = review_auth(issuer)
    await submit(client, auth, rejected_message("PG-1"))
    [item] = (await wait_for_items(client, reviewer, 1))["items"]

    away = await client.get("/review/stats")
    assert (away.status_code, away.headers["location"]) == (
        303,
        "/review/login?next=%2Freview%2Fstats",
    )
    reporter_token = auth["Authorization"].removeprefix("Bearer ")
    refused = await client.post("/review/login", data={"token": reporter_token, "next": "/review"})
    assert refused.status_code == 401
    assert "mangler tilgangen intake:review" in refused.text
    token = reviewer["Authorization"].removeprefix("Bearer ")
    signed_in = await client.post(
        "/review/login", data={"token": token, "next": "https://elsewhere.example/"}
    )
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/review/problems")
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie

    page = await client.get(f"/review/items/{item['item_id']}")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert FNR not in page.text
    forged = await client.post(f"/review/items/{item['item_id']}/notes", data={"text": "x"})
    assert forged.status_code == 403
    assert "csrf_failed" in forged.text
    history = (await client.get(f"/v1/review/items/{item['item_id']}", headers=reviewer)).json()
    assert history["history"] == []

    bad = await client.get("/review/items", params={"status": "bad"})
    assert bad.status_code == 422
    assert "Ugyldig forespørsel" in bad.text
    assert "En verdi i filteret er ugyldig" in bad.text  # Norwegian, not the API's English
    assert 'id="nav-problems"' in bad.text  # an error page keeps the menu
