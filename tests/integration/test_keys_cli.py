"""Rotating the identity encryption key without downtime (docs/privacy.md): a running gateway
seals new identifiers under the new key at once, old ones stay readable, and ``intake keys
reencrypt`` re-seals the vault under the new key (resumable), ``intake keys status`` shows it."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
from typer.testing import CliRunner

from identity.keys import KeysetFile, load_keyset
from intake.cli import app
from tests.integration.helpers import appointment, wait_for_status
from wiring.settings import Settings


async def _report(
    client: httpx.AsyncClient, auth: dict[str, str], object_id: str, fnr: str
) -> None:
    message = appointment(object_id)
    message[0]["avtale"][0]["person"]["fodselsNr"] = fnr
    response = await client.post("/v1/messages/HST_Avtale/1", json=message, headers=auth)
    assert response.status_code == 202, response.text
    await wait_for_status(client, response.json()["receipt_id"], auth, {"applied"})


def _vault(settings: Settings) -> dict[str, tuple[str, bytes]]:
    db = sqlite3.connect(settings.data_dir / "state.sqlite3")
    try:
        rows = db.execute("SELECT pseudonym, key_id, sealed FROM identity_vault").fetchall()
    finally:
        db.close()
    return {p: (k, bytes(s)) for p, k, s in rows}


async def test_rotate_then_reencrypt_while_the_gateway_runs(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    runner = CliRunner()
    data_dir = ["--data-dir", str(settings.data_dir)]
    await _report(client, auth, "before", "15031245610")
    assert {k for k, _ in _vault(settings).values()} == {"e1"}

    rotated = await asyncio.to_thread(runner.invoke, app, ["keys", "rotate", *data_dir])
    assert rotated.exit_code == 0, rotated.output
    assert "e2" in rotated.output
    await asyncio.sleep(KeysetFile.CHECK_SECONDS + 0.1)  # running processes look each second
    await _report(client, auth, "after", "11034210189")  # the same process, no restart
    assert sorted(k for k, _ in _vault(settings).values()) == ["e1", "e2"]

    status = await asyncio.to_thread(runner.invoke, app, ["keys", "status", *data_dir])
    assert "e1: 1 vault rows" in status.output, status.output
    again = await asyncio.to_thread(
        runner.invoke, app, ["keys", "reencrypt", *data_dir, "--batch", "1"]
    )
    assert again.exit_code == 0, again.output
    assert "done: 1 vault rows re-sealed" in again.output
    vault = _vault(settings)
    assert {k for k, _ in vault.values()} == {"e2"}
    keyset = load_keyset(settings.resolved_identity_keyset)
    opened = {keyset.open(sealed, p.encode()).decode() for p, (_, sealed) in vault.items()}
    assert opened == {"15031245610", "11034210189"}
    idle = await asyncio.to_thread(runner.invoke, app, ["keys", "reencrypt", *data_dir])
    assert "done: 0 vault rows re-sealed" in idle.output  # idempotent
