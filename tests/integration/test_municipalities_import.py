"""`intake codelists import --format klass`: Statistics Norway's municipality classification and
its changes into the store, as an operator loads them; a file in the wrong shape is refused with
the line and field, and nothing of it is stored."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from importlib import resources
from pathlib import Path

from typer.testing import CliRunner

from intake.cli import app
from statestore.codelists import CodeListRepository
from statestore.engine import create_engines
from statestore.migrate import upgrade
from validators.codelists import CodeList
from wiring.settings import Settings

runner = CliRunner()
SAMPLES = resources.files("validators") / "codelists_samples"


def stored(settings: Settings) -> dict[str, CodeList]:
    async def load() -> dict[str, CodeList]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await upgrade(settings.resolved_database_url)
        engines = create_engines(settings.resolved_database_url)
        try:
            return {c.id: c for c in await CodeListRepository(engines).load_all()}
        finally:
            await engines.dispose()

    return asyncio.run(load())


def test_the_classification_and_its_changes_are_imported(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    codes, changes = tmp_path / "131-codes.json", tmp_path / "131-changes.json"
    codes.write_text((SAMPLES / "kommunenummer.klass.json").read_text(encoding="utf-8"))
    changes.write_text((SAMPLES / "kommunenummer.klass-changes.json").read_text(encoding="utf-8"))
    done = runner.invoke(
        app,
        ["codelists", "import", str(codes), "--format", "klass", "--id", "kommunenummer",
         "--title", "Kommuner (SSB 131)", "--changes", str(changes),
         "--data-dir", str(settings.data_dir)],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "15 changes" in done.output
    municipalities = stored(settings)["kommunenummer"]
    assert not municipalities.sample
    assert municipalities.lookup("3301", date(2024, 6, 1)).status == "member"
    assert municipalities.as_of("0602", date(2024, 1, 1)) == ["3301"]


def test_a_file_in_the_wrong_shape_stores_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    document = json.loads((SAMPLES / "kommunenummer.klass.json").read_text(encoding="utf-8"))
    document["codes"][2]["validFrom"] = "1.1.2020"
    broken = tmp_path / "131-codes.json"
    broken.write_text(json.dumps(document, indent=2))
    refused = runner.invoke(
        app,
        ["codelists", "import", str(broken), "--format", "klass", "--id", "kommunenummer",
         "--data-dir", str(settings.data_dir)],
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "codes[2].validFrom" in refused.output
    assert "line " in refused.output
    assert "kommunenummer" not in stored(settings)
