"""``intake identities migrate`` on a store written with identifiers in plaintext (as before
pseudonymisation; made here with the benchmark-only INTAKE_IDENTITY_PROTECTION=false): afterwards
no person number is in the store's tables, each opens from the vault, the person index is filled,
review items are masked and sealed, and a second run changes nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from identity.keys import load_keyset
from identity.pseudonyms import pseudonym_of
from intake.cli import app
from receiver.app import create_app
from receiver.auth import DevIssuer
from tests.conftest import UNIT, running_app
from tests.integration.helpers import appointment, wait_for_status
from tests.integration.test_review import rejected_message, wait_for_items
from wiring.settings import Settings

FNR = "15031245610"
TABLES = ("events", "objects", "object_versions", "review_items")


def _dump(data_dir: Path) -> bytes:
    db = sqlite3.connect(data_dir / "state.sqlite3")
    try:
        return b"\n".join(
            repr(row).encode() for table in TABLES for row in db.execute(f"SELECT * FROM {table}")
        )
    finally:
        db.close()


async def test_migrate_pseudonymises_an_old_store_and_is_idempotent(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        environment="test",
        consumer_poll_seconds=0.05,
        identity_protection=False,
    )
    issuer = DevIssuer.load_or_create(settings)
    auth = {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:report'])}"}
    reviewer = {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:review'])}"}
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        for body in (appointment("old-1"), rejected_message("old-2")):
            response = await client.post("/v1/messages/HST_Avtale/1", json=body, headers=auth)
            await wait_for_status(
                client, response.json()["receipt_id"], auth, {"applied", "partially_applied"}
            )
        await wait_for_items(client, reviewer, 1)
    assert FNR.encode() in _dump(settings.data_dir)  # the old store, in plaintext

    runner = CliRunner()
    args = ["identities", "migrate", "--data-dir", str(settings.data_dir), "--batch", "2"]
    first = await asyncio.to_thread(runner.invoke, app, args)
    assert first.exit_code == 0, first.output
    assert "events: " in first.output
    assert "review_items 1" in first.output
    assert FNR.encode() not in _dump(settings.data_dir)
    for path in settings.data_dir.rglob("*"):  # every byte: the log's copy, WAL, free pages
        if path.is_file():
            assert FNR.encode() not in path.read_bytes(), path

    keyset = load_keyset(settings.resolved_identity_keyset)
    pseudonym = pseudonym_of(keyset, FNR)
    db = sqlite3.connect(settings.data_dir / "state.sqlite3")
    try:
        (sealed,) = db.execute(
            "SELECT sealed FROM identity_vault WHERE pseudonym = ?", (pseudonym,)
        ).fetchone()
        persons = db.execute(
            "SELECT object_id FROM person_objects WHERE pseudonym = ? ORDER BY object_id",
            (pseudonym,),
        ).fetchall()
        (review_sealed,) = db.execute("SELECT sealed FROM review_items").fetchone()
    finally:
        db.close()
    assert keyset.open(bytes(sealed), pseudonym.encode()).decode() == FNR
    assert [p for (p,) in persons] == ["old-1", "old-2-ok"]
    assert review_sealed is not None

    again = await asyncio.to_thread(runner.invoke, app, args)
    assert again.exit_code == 0, again.output
    assert "done: events 0, objects 0, object_versions 0, review_items 0" in again.output

    # The migrated store serves as any other: the rejected item still reveals as sent.
    protected = Settings(data_dir=settings.data_dir, environment="test")
    async with running_app(create_app(protected, registry=CollectorRegistry())) as client:
        listed = await wait_for_items(client, reviewer, 1)
        item_id = listed["items"][0]["item_id"]
        revealed = await client.post(
            f"/v1/review/items/{item_id}/reveal",
            json={"path": "/person/fodselsNr", "reason": "Kontroll etter migrering"},
            headers=reviewer,
        )
        assert revealed.json()["value"] == FNR
