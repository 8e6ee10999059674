"""Persons by pseudonym (docs/privacy.md): the person timeline across KPR and NPR, one
re-identification at a time with a purpose, every person-level read in the access log, and a
citizen's insight, which shows where they are registered and who read their data (organisation
and role, never a name of staff)."""

from __future__ import annotations

from typing import Any

import httpx

from identity.keys import load_keyset
from identity.pseudonyms import pseudonym_of
from receiver.auth import DevIssuer
from tests.conftest import UNIT
from tests.integration.helpers import appointment, example_message, wait_for_status
from tests.integration.test_review import rejected_message, wait_for_items
from wiring.settings import Settings

PERSON = "11034210189"  # in NPR_Kontakt's example (contact K-2024-0901); also sent to HST here


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _report(client: httpx.AsyncClient, auth: dict[str, str], url: str, body: Any) -> None:
    response = await client.post(url, json=body, headers=auth)
    assert response.status_code == 202, response.text
    final = await wait_for_status(
        client, response.json()["receipt_id"], auth, {"applied", "partially_applied", "rejected"}
    )
    assert final["status"] != "rejected", final


async def test_timeline_reidentification_and_insight_with_every_read_logged(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, issuer: DevIssuer
) -> None:
    visit = appointment("hst-1")
    visit[0]["avtale"][0]["person"]["fodselsNr"] = PERSON
    await _report(client, auth, "/v1/messages/HST_Avtale/1", visit)
    npr = example_message("valid/kontakter.json", "NPR_Kontakt/1")
    await _report(client, auth, "/v1/messages/NPR_Kontakt/1", npr)
    pseudonym = pseudonym_of(load_keyset(settings.resolved_identity_keyset), PERSON)

    staff = _bearer(issuer.mint(UNIT, scopes=["intake:state"], subject="sara.statistikk"))
    line = await client.get(
        f"/v1/persons/{pseudonym}/timeline",
        params={"purpose": "Kvalitetskontroll av forløp"},
        headers=staff,
    )
    assert line.status_code == 200, line.text
    entries = line.json()["entries"]
    assert {(e["register"], e["message_type"]) for e in entries} == {
        ("KPR", "HST_Avtale"),
        ("NPR", "NPR_Kontakt"),
    }
    assert PERSON not in line.text
    assert all(pseudonym in str(e["state"]) for e in entries)
    assert (await client.get("/v1/persons/nobody/timeline", headers=staff)).status_code == 422

    state = await client.get(
        "/v1/state/HST_Avtale/hst-1",
        params={"unit": UNIT, "purpose": "Oppfølging av avvik"},
        headers=staff,
    )
    assert state.status_code == 200
    assert state.json()["state"]["person"]["fodselsNr"] == pseudonym

    # Plaintext needs its own scope and a purpose, one person at a time.
    ask = {"pseudonym": pseudonym, "purpose": "Retting etter henvendelse fra pasient"}
    refused = await client.post("/v1/identities/reidentify", json=ask, headers=staff)
    assert refused.status_code == 403
    keeper = _bearer(issuer.mint(UNIT, scopes=["intake:identity"], subject="ida.identitet"))
    short = await client.post(
        "/v1/identities/reidentify", json={**ask, "purpose": "fordi"}, headers=keeper
    )
    assert short.status_code == 422
    found = await client.post("/v1/identities/reidentify", json=ask, headers=keeper)
    assert found.status_code == 200, found.text
    assert found.json() == {"pseudonym": pseudonym, "kind": "fnr", "identifier": PERSON}

    citizen = _bearer(issuer.mint("", scopes=["intake:insight"], pid=PERSON))
    insight = await client.get("/v1/insight", headers=citizen)
    assert insight.status_code == 200, insight.text
    body = insight.json()
    assert {(r["register"], r["message_type"], r["unit"]) for r in body["registered"]} == {
        ("KPR", "HST_Avtale", UNIT),
        ("NPR", "NPR_Kontakt", UNIT),
    }
    reads = [(r["organisation"], r["role"], r["action"], r["purpose"]) for r in body["read_by"]]
    assert reads == [
        (UNIT, "intake:identity", "reidentify", "Retting etter henvendelse fra pasient"),
        (UNIT, "intake:state", "state", "Oppfølging av avvik"),
        (UNIT, "intake:state", "timeline", "Kvalitetskontroll av forløp"),
    ]
    for name in ("sara.statistikk", "ida.identitet", pseudonym, PERSON):
        assert name not in insight.text  # no staff names, and not even their own number

    # The register's own audit sees who, by name, from the same append-only log.
    admin = _bearer(issuer.mint(UNIT, scopes=["intake:admin"], subject="revisor"))
    audit = (await client.get(f"/v1/persons/{pseudonym}/reads", headers=admin)).json()
    assert [(e["actor"], e["action"]) for e in audit["entries"]] == [
        (None, "insight"),  # the citizen's own, without who they are
        ("ida.identitet", "reidentify"),
        ("sara.statistikk", "state"),
        ("sara.statistikk", "timeline"),
    ]
    assert audit["more"] is False
    newest = (
        await client.get(f"/v1/persons/{pseudonym}/reads", params={"limit": 2}, headers=admin)
    ).json()
    assert (len(newest["entries"]), newest["more"]) == (2, True)
    assert (await client.get(f"/v1/persons/{pseudonym}/reads", headers=staff)).status_code == 403

    # A citizen's token reaches insight only; a unit's token never does.
    assert (
        await client.get("/v1/state/HST_Avtale/hst-1", params={"unit": UNIT}, headers=citizen)
    ).status_code == 403
    unit_insight = _bearer(issuer.mint(UNIT, scopes=["intake:insight"]))
    assert (await client.get("/v1/insight", headers=unit_insight)).status_code == 403

    # Another person's insight shows nothing of this one.
    other = _bearer(issuer.mint("", scopes=["intake:insight"], pid="30046510190"))
    theirs = (await client.get("/v1/insight", headers=other)).json()
    assert {r["message_type"] for r in theirs["registered"]} == {"NPR_Kontakt"}
    assert theirs["read_by"] == []


async def test_a_reviewers_reveal_and_a_state_read_show_in_the_citizens_insight(
    client: httpx.AsyncClient, auth: dict[str, str], issuer: DevIssuer
) -> None:
    # One appointment accepted, one rejected (a code outside its list); the same person.
    await _report(client, auth, "/v1/messages/HST_Avtale/1", rejected_message("rv-1"))
    reviewer = _bearer(issuer.mint(UNIT, scopes=["intake:review"], subject="kari.kvalitet"))
    listed = await wait_for_items(client, reviewer, 1)
    item_id = listed["items"][0]["item_id"]
    revealed = await client.post(
        f"/v1/review/items/{item_id}/reveal",
        json={"path": "/person/fodselsNr", "reason": "Sjekk av fødselsnummer"},
        headers=reviewer,
    )
    assert revealed.json()["value"] == "15031245610"
    staff = _bearer(issuer.mint(UNIT, scopes=["intake:state"]))
    state = await client.get(
        "/v1/state/HST_Avtale/rv-1-ok",
        params={"unit": UNIT, "purpose": "Statistikk"},
        headers=staff,
    )
    assert state.status_code == 200

    citizen = _bearer(issuer.mint("", scopes=["intake:insight"], pid="15031245610"))
    body = (await client.get("/v1/insight", headers=citizen)).json()
    reads = [(r["role"], r["action"], r["purpose"]) for r in body["read_by"]]
    assert reads == [
        ("intake:state", "state", "Statistikk"),
        ("intake:review", "reveal", "Sjekk av fødselsnummer"),
    ]
    assert "kari.kvalitet" not in str(body)
    assert [r["message_type"] for r in body["registered"]] == ["HST_Avtale"]
