"""Deprecated model versions are announced; retired ones are refused."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from receiver.problems import Problem
from receiver.routes.messages import model_lifecycle_headers
from schemas.catalogue import MessageModel, load_catalogue, load_catalogue_from


def _model(tmp_path: Path, status: str, sunset: str | None) -> MessageModel:
    schema = copy.deepcopy(load_catalogue().require("HST_Avtale", 1).schema)
    schema["x-status"], schema["x-sunset"] = status, sunset
    folder = tmp_path / "HST_Avtale" / "1"
    folder.mkdir(parents=True)
    (folder / "schema.avsc").write_text(json.dumps(schema), encoding="utf-8")
    return load_catalogue_from(tmp_path).require("HST_Avtale", 1)


def test_active_versions_carry_no_headers(tmp_path: Path) -> None:
    assert model_lifecycle_headers(_model(tmp_path, "active", None), date(2030, 1, 1)) == {}


def test_deprecated_versions_announce_their_sunset(tmp_path: Path) -> None:
    model = _model(tmp_path, "deprecated", "2027-06-30")
    headers = model_lifecycle_headers(model, date(2027, 6, 30))
    assert headers == {"Deprecation": "true", "Sunset": "Wed, 30 Jun 2027 23:59:59 GMT"}


def test_versions_past_their_sunset_are_refused(tmp_path: Path) -> None:
    model = _model(tmp_path, "deprecated", "2027-06-30")
    with pytest.raises(Problem) as refused:
        model_lifecycle_headers(model, date(2027, 7, 1))
    assert (refused.value.status, refused.value.code) == (410, "model_retired")
