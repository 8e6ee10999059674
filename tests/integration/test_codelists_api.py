"""Code lists over HTTP and from the command line: published, imported, used by validation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from typer.testing import CliRunner

from intake.cli import app
from tests.integration.helpers import appointment
from wiring.settings import Settings

runner = CliRunner()
URL = "/v1/messages/HST_Avtale/1"


async def test_code_lists_are_published(client: httpx.AsyncClient) -> None:
    lists = (await client.get("/v1/codelists")).json()
    assert {"volven-9151", "snomed-tann-funn", "icd10"} <= {c["id"] for c in lists}
    funn = (await client.get("/v1/codelists/snomed-tann-funn", params={"on": "2025-06-01"})).json()
    assert funn["sample"] is True
    assert funn["version"] == "snomed-tann-funn@2025-03-01 (sample)"
    inactive = {m["code"] for m in funn["members"] if not m["active"]}
    assert inactive == {"234975001"}
    missing = await client.get("/v1/codelists/nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == "unknown_codelist"


async def test_an_imported_list_replaces_the_sample_for_validation(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    message = appointment("CL-1")
    message[0]["avtale"][0]["konsultasjonType"] = "NY"
    before = (await client.post(URL, json=message, headers=auth)).json()
    assert [f["rule_id"] for f in before["items"][0]["findings"]] == ["KOD-001"]

    tsv = tmp_path / "konsultasjonstype.tsv"
    tsv.write_text(
        "code\tdisplay\tactive\teffective\nPQ\tPlanlagt\t1\t2020-01-01\n"
        "NY\tNy type\t1\t2024-01-01\n",
        encoding="utf-8",
    )
    # The CLI runs its own event loop: call it from a thread, as if from another process.
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        [
            "codelists",
            "import",
            str(tsv),
            "--id",
            "hst-konsultasjonstype",
            "--title",
            "KPR konsultasjonstype",
            "--data-dir",
            str(settings.data_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    runtime = client._transport.app.state.runtime  # type: ignore[attr-defined]
    await runtime.codelists.refresh()  # what the periodic refresh does
    loaded = runtime.codelists.registry
    await runtime.codelists.refresh()  # nothing imported since: nothing reloaded
    assert runtime.codelists.registry is loaded

    message[0]["avtale"][0]["avtaleId"] = "CL-2"
    after = (await client.post(URL, json=message, headers=auth)).json()
    assert after["items"][0]["status"] == "accepted"
    listed = await asyncio.to_thread(
        runner.invoke, app, ["codelists", "list", "--data-dir", str(settings.data_dir)]
    )
    assert listed.exit_code == 0
    assert "konsultasjonstype.tsv" in listed.output


def test_malformed_code_list_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("not an rf2 file\n", encoding="utf-8")
    result = runner.invoke(
        app, ["codelists", "import", str(bad), "--id", "x", "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 1
    no_id = runner.invoke(app, ["codelists", "import", str(bad), "--data-dir", str(tmp_path)])
    assert no_id.exit_code == 2
