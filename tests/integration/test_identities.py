"""Person identifiers of accepted items never reach the log or the state in plaintext: each
becomes a pseudonym, stable across message types, and its sealed number goes to the identity
vault, from which it opens with the keyset (docs/privacy.md). Embedded stores, read byte by byte.

Rejected items are kept masked in the clear and sealed as sent: a reveal opens the sealed copy.
Every byte of the data dir (SQLite files and their WAL) is scanned for the numbers sent."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from identity.keys import KeysetError, load_keyset
from identity.pseudonyms import pseudonym_of
from receiver.auth import DevIssuer
from tests.conftest import UNIT
from tests.integration.helpers import appointment, example_message, wait_for_status
from tests.integration.test_review import import_corrected_codelist, rejected_message
from tests.integration.test_slash import SlashSender
from tests.integration.test_webhooks import SECRET
from tests.servers import Receiver
from wiring.runtime import open_identity_keys
from wiring.settings import Settings

MODELS = {
    "HST_Avtale/1": "valid/example.json",
    "HST_Konsultasjon/1": "valid/konsultasjoner.json",
    "IPLOS_Tjenestehendelse/1": "valid/tjenesteforlop.json",
    "NPR_Kontakt/1": "valid/kontakter.json",
    "TANN_Behandling/1": "valid/behandlinger.json",
}
SLASH_PERSON = "01019049880"
REPLAYED_PERSON = "11034210189"


def _numbers(message: Any) -> set[str]:
    """The person numbers in a message: every 11- or 12-digit string in a person block."""
    found: set[str] = set()

    def walk(node: Any, in_person: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, in_person or key in ("person", "pasient"))
        elif isinstance(node, list):
            for value in node:
                walk(value, in_person)
        elif in_person and isinstance(node, str) and re.fullmatch(r"\d{11,12}", node):
            found.add(node)
        elif in_person and isinstance(node, int) and 10**9 < node < 10**12:
            found.update({str(node), str(node).zfill(11)})  # a JSON number, zero-padded

    walk(message, False)
    return found


def _accepted_bytes(data_dir: Path) -> bytes:
    """Everything the log's accepted topics, the state and its history hold."""
    chunks: list[bytes] = []
    log = sqlite3.connect(data_dir / "eventlog.sqlite3")
    try:
        for key, value in log.execute(
            "SELECT key, value FROM records WHERE topic LIKE 'intake.accepted.%'"
        ):
            chunks += [bytes(key), bytes(value)]
    finally:
        log.close()
    store = sqlite3.connect(data_dir / "state.sqlite3")
    try:
        for table in ("events", "objects", "object_versions"):
            for row in store.execute(f"SELECT * FROM {table}"):
                chunks += [orjson.dumps(row, default=lambda v: v.hex())]
    finally:
        store.close()
    return b"\n".join(chunks)


async def test_accepted_identifiers_are_pseudonyms_and_open_from_the_vault(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, issuer: DevIssuer
) -> None:
    numbers: set[str] = set()
    for model, example in MODELS.items():
        message = example_message(example, model)
        numbers |= _numbers(message)
        response = await client.post(f"/v1/messages/{model}", json=message, headers=auth)
        assert response.status_code == 202, response.text
        await wait_for_status(
            client, response.json()["receipt_id"], auth, {"applied", "partially_applied"}
        )
    assert len(numbers) >= 3

    stored = _accepted_bytes(settings.data_dir)
    assert len(stored) > 10_000  # the items are there, as pseudonyms
    for number in numbers:
        assert number.encode() not in stored, number

    keyset = load_keyset(settings.resolved_identity_keyset)
    vault = sqlite3.connect(settings.data_dir / "state.sqlite3")
    try:
        rows = vault.execute(
            "SELECT pseudonym, kind, key_id, sealed FROM identity_vault"
        ).fetchall()
    finally:
        vault.close()
    opened = {
        keyset.open(bytes(sealed), pseudonym.encode()).decode() for pseudonym, _, _, sealed in rows
    }
    assert numbers <= opened
    assert {key_id for _, _, key_id, _ in rows} == {"e1"}
    for number in numbers:
        assert pseudonym_of(keyset, number).encode() in stored

    staff = {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:state'])}"}
    avtale = example_message()[0]["avtale"][0]
    state = (
        await client.get(
            f"/v1/state/HST_Avtale/{avtale['avtaleId']}", params={"unit": UNIT}, headers=staff
        )
    ).json()
    person = state["state"]["person"]
    assert person["fodselsNr"] == pseudonym_of(keyset, avtale["person"]["fodselsNr"])


def test_production_needs_a_keyset_and_a_bad_one_stops_the_process(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="INTAKE_IDENTITY_KEYSET_FILE"):
        Settings(
            environment="production",
            auth_issuer="https://issuer.example",
            auth_jwks_url="https://issuer.example/jwks",
            feed_secret="f" * 40,
        )
    with pytest.raises(ValidationError, match="never production"):
        Settings(
            environment="production",
            auth_issuer="https://issuer.example",
            auth_jwks_url="https://issuer.example/jwks",
            feed_secret="f" * 40,
            identity_keyset_file=tmp_path / "keyset.json",
            identity_protection=False,
        )
    broken = tmp_path / "keyset.json"
    broken.write_text("placeholder")
    broken.chmod(0o600)
    with pytest.raises(KeysetError, match="not an identity keyset"):
        open_identity_keys(Settings(data_dir=tmp_path, identity_keyset_file=broken))
    with pytest.raises(KeysetError, match="no identity keyset"):
        open_identity_keys(Settings(data_dir=tmp_path, identity_keyset_file=tmp_path / "none"))
    # the embedded one is made once, 0600, and kept
    settings = Settings(data_dir=tmp_path / "data")
    first = open_identity_keys(settings).current()
    assert settings.resolved_identity_keyset.stat().st_mode & 0o777 == 0o600
    assert open_identity_keys(settings).current() == first


async def test_no_person_number_sent_is_anywhere_in_the_data_dir(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    settings: Settings,
    issuer: DevIssuer,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    numbers: set[str] = set()
    receipts = []
    # The unit's webhook receives every receipt pushed: its bodies are scanned too.
    hook = {"url": receiver.url, "secret": SECRET}
    assert (await client.put("/v1/webhook", json=hook, headers=auth)).status_code == 200
    examples = sorted(
        (Path(__file__).parents[2] / "schemas" / "models").glob("*/1/examples/*/*.json")
    )
    for path in examples:
        if path.name.endswith(".expected.json"):
            continue
        model = f"{path.parents[3].name}/1"
        message = orjson.loads(path.read_bytes())
        numbers |= _numbers(message)
        response = await client.post(f"/v1/messages/{model}", json=message, headers=auth)
        assert response.status_code in (202, 422), (path, response.text)
        if response.status_code == 202:
            receipts.append(response.json()["receipt_id"])
    # Through SLASH too (FHI's encryption steps, as an EPJ client sends)...
    slashed = appointment("slash-1")
    slashed[0]["avtale"][0]["person"]["fodselsNr"] = SLASH_PERSON
    numbers.add(SLASH_PERSON)
    sent = await SlashSender(client, issuer).send(slashed)
    assert sent.status_code == 200, sent.text
    receipts.append(sent.json()["receiptId"])
    # ... and a rejected item replayed after a code-list fix.
    replayed = rejected_message("rp-1")
    replayed[0]["avtale"][1]["person"]["fodselsNr"] = REPLAYED_PERSON
    numbers.add(REPLAYED_PERSON)
    response = await client.post("/v1/messages/HST_Avtale/1", json=replayed, headers=auth)
    receipts.append(response.json()["receipt_id"])
    final = {"applied", "partially_applied", "rejected"}
    for receipt_id in receipts:
        await wait_for_status(client, receipt_id, auth, final)
    reviewer = {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:review'])}"}
    rejected = (await client.get("/v1/review/items", headers=reviewer)).json()
    assert rejected["total"] > 0
    await import_corrected_codelist(settings, tmp_path)
    # Every item failing KOD-001 on the code the import adds (NY) passes now: rp-1 among them.
    done = await client.post(
        "/v1/review/replay", json={"filter": {"rule_id": "KOD-001"}}, headers=reviewer
    )
    assert done.json()["replayed"], done.text
    await wait_for_status(client, response.json()["receipt_id"], auth, {"applied"})
    assert len(numbers) >= 10, numbers

    found = {
        number: sorted(
            str(f.relative_to(settings.data_dir))
            for f in _files(settings.data_dir)
            if number.encode() in f.read_bytes()
        )
        for number in numbers
    }
    assert {n: where for n, where in found.items() if where} == {}

    def pushed() -> set[str]:
        return {orjson.loads(body)["receipt"]["receipt_id"] for _, body in receiver.received}

    deadline = time.monotonic() + 30
    while not set(receipts) <= pushed() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert set(receipts) <= pushed()
    bodies = b"\n".join(body for _, body in receiver.received)
    assert [n for n in numbers if n.encode() in bodies] == []

    # A reviewer still sees a rejected person number on a logged reveal: from the sealed copy.
    for row in rejected["items"]:
        detail = (await client.get(f"/v1/review/items/{row['item_id']}", headers=reviewer)).json()
        if "/person/fodselsNr" in detail["masked_paths"]:
            revealed = await client.post(
                f"/v1/review/items/{row['item_id']}/reveal",
                json={"path": "/person/fodselsNr", "reason": "Kontroll av kontrollsiffer"},
                headers=reviewer,
            )
            assert revealed.status_code == 200, revealed.text
            value = str(revealed.json()["value"])
            assert "•" not in value
            assert value == str(_as_sent_person_number(detail, value))
            break
    else:
        raise AssertionError("no rejected item with a masked fødselsnummer")


def _as_sent_person_number(detail: dict[str, Any], value: str) -> str:
    """The masked value keeps the length of what was sent."""
    masked = str(detail["item"]["person"]["fodselsNr"])
    assert len(masked) == len(value), (masked, value)
    return value


def _files(root: Path) -> list[Path]:
    return [f for f in root.rglob("*") if f.is_file()]
