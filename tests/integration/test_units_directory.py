"""The directory of reporting units from Enhetsregisteret's bulk format (fixtures in its exact
shape, tests/fixtures/enhetsregisteret): main units and sub-units imported with `intake units
import`, gzip or not, filtered by industry; their names beside the organisation number on the
review pages and in the export; a file in the wrong shape refused with line and field, nothing
stored."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from intake.cli import app
from receiver.app import create_app
from receiver.auth import DevIssuer
from statestore.engine import create_engines
from statestore.enhetsregisteret import UnitFileError, parse_units, read_file
from statestore.migrate import upgrade
from statestore.units import UnitDirectory
from tests.conftest import UNIT, running_app
from tests.integration.test_review import rejected_message, review_auth, submit, wait_for_items
from wiring.settings import Settings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "enhetsregisteret"
runner = CliRunner()


def test_main_units_and_sub_units_are_read() -> None:
    units = {u.orgnr: u for u in parse_units(read_file(FIXTURES / "underenheter.json"))}
    site = units[UNIT]
    assert (site.kind, site.name, site.kommune_nr) == (
        "underenhet",
        "OSLO KOMMUNE HELSESTASJON SENTRUM",
        "0301",
    )
    assert site.parent_orgnr == "974150018"
    assert site.industry_code == "86.909"
    main = {u.orgnr: u for u in parse_units(read_file(FIXTURES / "enheter.json"))}
    assert main["974150018"].kind == "enhet"
    assert main["974150018"].organisation_form == "KOMM"
    health = parse_units(read_file(FIXTURES / "enheter.json"), industry_prefixes=("86", "87"))
    assert [u.name for u in health] == ["LEGESENTERET BRYGGEN AS"]


@pytest.mark.parametrize(
    ("index", "change", "message"),
    [
        (1, lambda e: e[1].update(organisasjonsnummer="974150027"), "field organisasjonsnummer"),
        (2, lambda e: e[2].pop("navn"), "field navn is missing"),
        (0, lambda e: e[0]["forretningsadresse"].update(kommunenummer="1"), "field kommunenummer"),
    ],
)  # fmt: skip
def test_a_file_in_the_wrong_shape_names_line_and_field(
    index: int, change: object, message: str
) -> None:
    entries = json.loads((FIXTURES / "enheter.json").read_text(encoding="utf-8"))
    change(entries)  # type: ignore[operator]
    text = json.dumps(entries, ensure_ascii=False, indent=2)
    entry_lines = [n + 1 for n, line in enumerate(text.splitlines()) if line == "  {"]
    with pytest.raises(UnitFileError) as refused:
        parse_units(text)
    assert str(refused.value).startswith(f"line {entry_lines[index]}: unit {index}: {message}")
    with pytest.raises(UnitFileError, match="one JSON array"):
        parse_units('{"_embedded": {}}')


def test_import_replaces_the_directory_and_a_bad_file_stores_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    packed = tmp_path / "underenheter_alle.json.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "underenheter.json").read_bytes()))
    done = runner.invoke(
        app, ["units", "import", str(packed), "--data-dir", str(settings.data_dir)]
    )
    assert done.exit_code == 0, done.output
    assert "imported 4 units (underenhet)" in done.output
    broken = tmp_path / "enheter.json"
    broken.write_text(
        (FIXTURES / "enheter.json").read_text(encoding="utf-8").replace('"navn"', '"name"', 1)
    )
    refused = runner.invoke(
        app, ["units", "import", str(broken), "--data-dir", str(settings.data_dir)]
    )
    assert refused.exit_code == 1
    assert "field navn" in refused.output

    async def count() -> int:
        await upgrade(settings.resolved_database_url)
        engines = create_engines(settings.resolved_database_url)
        try:
            return await UnitDirectory(engines).count()
        finally:
            await engines.dispose()

    assert asyncio.run(count()) == 4


async def test_names_beside_the_organisation_number_in_the_review(
    settings: Settings, issuer: DevIssuer, auth: dict[str, str]
) -> None:
    app_ = create_app(settings, registry=CollectorRegistry())
    async with running_app(app_) as client:
        units = parse_units(read_file(FIXTURES / "underenheter.json"))
        await UnitDirectory(app_.state.runtime.engines).replace(units)
        reviewer = review_auth(issuer)
        await submit(client, auth, rejected_message("U-1"))
        await wait_for_items(client, reviewer, 1)
        listed = await client.get("/review/items", headers=reviewer)
        assert "OSLO KOMMUNE HELSESTASJON SENTRUM" in listed.text
        stats = await client.get("/review/stats", headers=reviewer)
        assert "OSLO KOMMUNE HELSESTASJON SENTRUM" in stats.text
        export = await client.get("/v1/review/items.csv", headers=reviewer)
        [row] = csv.DictReader(io.StringIO(export.content.decode("utf-8-sig")), delimiter=";")
        assert row["Enhetsnavn"] == "OSLO KOMMUNE HELSESTASJON SENTRUM"
        assert isinstance(client, httpx.AsyncClient)
