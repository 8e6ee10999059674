"""`intake schemas check` refuses a version that breaks its type's promise and accepts one that
keeps it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from intake.cli import app
from schemas.catalogue import load_catalogue, load_catalogue_from
from schemas.compatibility import check_catalogue

runner = CliRunner()


def _published() -> dict[str, Any]:
    schema: dict[str, Any] = copy.deepcopy(load_catalogue().require("HST_Avtale", 1).schema)
    return schema


def _avtale_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    block = schema["items"]
    avtale = next(f for f in block["fields"] if f["name"] == "avtale")
    fields: list[dict[str, Any]] = avtale["type"]["items"]["fields"]
    return fields


def _write(root: Path, version: int, schema: dict[str, Any]) -> None:
    folder = root / "HST_Avtale" / str(version)
    folder.mkdir(parents=True)
    (folder / "schema.avsc").write_text(json.dumps(schema), encoding="utf-8")


def _root_with_v2(tmp_path: Path, v2: dict[str, Any]) -> Path:
    root = tmp_path / "models"
    _write(root, 1, _published())
    _write(root, 2, v2)
    return root


def test_adding_an_optional_field_keeps_full_compatibility(tmp_path: Path) -> None:
    v2 = _published()
    _avtale_fields(v2).append(
        {"name": "merknad", "type": ["null", "string"], "default": None, "doc": "A note."}
    )
    root = _root_with_v2(tmp_path, v2)
    assert check_catalogue(load_catalogue_from(root)) == []
    result = runner.invoke(app, ["schemas", "check", "--root", str(root)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("change", "direction"),
    [
        ("add_required", "v2 cannot read v1"),
        ("remove_required", "v1 cannot read v2"),
        ("retype", "cannot read"),
    ],
)
def test_breaking_changes_are_refused(tmp_path: Path, change: str, direction: str) -> None:
    v2 = _published()
    fields = _avtale_fields(v2)
    if change == "add_required":
        fields.append({"name": "merknad", "type": "string", "doc": "A note, required."})
    elif change == "remove_required":
        fields[:] = [f for f in fields if f["name"] != "konsultasjonType"]
    else:
        next(f for f in fields if f["name"] == "oppmoteStatus")["type"] = "boolean"
    root = _root_with_v2(tmp_path, v2)
    problems = check_catalogue(load_catalogue_from(root))
    assert problems
    assert any(direction in str(p) for p in problems)
    result = runner.invoke(app, ["schemas", "check", "--root", str(root)])
    assert result.exit_code == 1
    assert "incompatible" in result.output


def test_backward_promise_allows_what_only_forward_forbids(tmp_path: Path) -> None:
    v1 = _published()
    v1["x-compatibility"] = "BACKWARD"
    v2 = copy.deepcopy(v1)
    # Dropping a required field: the new reader skips it in old data (backward holds), but an
    # old reader finds it missing in new data (forward breaks).
    _avtale_fields(v2)[:] = [f for f in _avtale_fields(v2) if f["name"] != "konsultasjonType"]
    root = tmp_path / "models"
    _write(root, 1, v1)
    _write(root, 2, v2)
    assert check_catalogue(load_catalogue_from(root)) == []
    v1["x-compatibility"] = v2["x-compatibility"] = "FORWARD"
    strict = tmp_path / "strict"
    _write(strict, 1, v1)
    _write(strict, 2, v2)
    assert check_catalogue(load_catalogue_from(strict))


def test_published_models_are_compatible() -> None:
    assert check_catalogue(load_catalogue()) == []
