"""Municipality numbers as a versioned classification: Statistics Norway's KLASS JSON (the shipped
sample is in the exact form its API answers), validation against the version in force on each
item's clinical date, mapping older numbers to a later version, and files in the wrong shape
refused with the line and field."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

import pytest

from schemas.catalogue import load_catalogue
from validators.codelists import CodeListFormatError, CodeListRegistry, load_samples
from validators.engine import ModelValidator, ValidationContext
from validators.klass import parse_klass

SAMPLES = resources.files("validators") / "codelists_samples"
CODES = (SAMPLES / "kommunenummer.klass.json").read_text(encoding="utf-8")
CHANGES = (SAMPLES / "kommunenummer.klass-changes.json").read_text(encoding="utf-8")


def municipalities() -> Any:
    return parse_klass(
        CODES, CHANGES, codelist_id="kommunenummer", title="Kommuner", sample=True, source="t"
    )


def test_a_renumbered_municipality_before_and_after_its_change() -> None:
    klass = municipalities()
    # Drammen: 3005 from the 2020 reform, 3301 from 1 January 2024.
    assert klass.lookup("3005", date(2023, 12, 31)).status == "member"
    after = klass.lookup("3005", date(2024, 1, 1))
    assert after.status == "inactive"
    assert after.version == "kommunenummer@2024-01-01 (sample)"
    assert klass.lookup("3301", date(2023, 12, 31)).status == "absent"
    assert klass.lookup("3301", date(2024, 1, 1)).status == "member"
    # A new name on the same number (a new KLASS period from the same day) keeps it valid.
    assert klass.lookup("5001", date(2024, 1, 1)).status == "member"


def test_older_numbers_map_to_a_later_version() -> None:
    klass = municipalities()
    assert klass.as_of("0602", date(2024, 1, 1)) == ["3301"]  # Drammen, through two reforms
    assert klass.as_of("0602", date(2021, 6, 1)) == ["3005"]
    assert klass.as_of("0301", date(2024, 1, 1)) == ["0301"]  # Oslo kept its number
    assert klass.as_of("1534", date(2024, 1, 1)) == ["1508", "1580"]  # merged, then split


def _appointment_on(day: str, kommune: str, bydel: str | None = None) -> Any:
    """The HST_Avtale example's first appointment alone, on ``day``, from ``kommune`` (and
    ``bydel``)."""
    model = next(m for m in load_catalogue() if m.key == "HST_Avtale/1")
    example = next(e for e in model.examples if e.valid)
    block = copy.deepcopy(example.message[0])
    item = block["avtale"][0]
    item["datoTid"] = day + item["datoTid"][10:]
    message = [{"orgNr": block["orgNr"], "kommuneNr": kommune, "bydelNr": bydel, "avtale": [item]}]
    context = ValidationContext(
        now=datetime(2026, 1, 15, 12, 0, tzinfo=UTC),
        allow_synthetic=False,
        codelists=CodeListRegistry(load_samples()),
    )
    return ModelValidator(model).validate(message, context)


def test_kommune_nr_is_checked_on_the_items_clinical_date() -> None:
    ok = _appointment_on("2024-03-01", "3301")
    assert ok.items[0].findings == []
    old = _appointment_on("2024-03-01", "3005")
    [finding] = old.items[0].findings
    assert (finding.rule_id, finding.path) == ("KOD-002", "/0/kommuneNr")
    assert finding.codelist_version == "kommunenummer@2024-01-01 (sample)"
    assert old.items[0].value is None  # rejected
    unknown = _appointment_on("2024-03-01", "9999")
    assert [f.rule_id for f in unknown.items[0].findings] == ["KOD-001"]


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        ({"codes": [{"code": "0301", "name": "Oslo"}]}, "field codes[0].validFrom"),
        ({"codes": [{"name": "Oslo", "validFrom": "2020-01-01"}]}, "field codes[0].code"),
        ({"classificationItems": []}, 'field "codes"'),
        (
            {"codes": [{"code": "0301", "validFrom": "2020-01-01", "validTo": "2019-01-01"}]},
            "codes[0].validTo is not after validFrom",
        ),
    ],
)
def test_a_file_in_the_wrong_shape_is_refused_with_line_and_field(
    broken: dict[str, Any], where: str
) -> None:
    with pytest.raises(CodeListFormatError, match="line") as refused:
        parse_klass(
            json.dumps(broken, indent=2),
            codelist_id="kommunenummer",
            title="x",
            sample=False,
            source="x.json",
        )
    assert where in str(refused.value)


def test_the_line_of_a_bad_entry_is_named() -> None:
    document = json.loads(CODES)
    del document["codes"][3]["validFrom"]
    text = json.dumps(document, indent=2)
    with pytest.raises(CodeListFormatError) as refused:
        parse_klass(text, codelist_id="k", title="k", sample=False, source="x")
    line = text.splitlines().index("    {", 0) + 1  # the first entry's line
    entry_lines = [n + 1 for n, t in enumerate(text.splitlines()) if t == "    {"]
    assert f"line {entry_lines[3]}:" in str(refused.value)
    assert line == entry_lines[0]
    bad_changes = json.dumps({"codeChanges": [{"oldCode": "0602", "newCode": "3005"}]})
    with pytest.raises(CodeListFormatError, match=r"codeChanges\[0\]\.changeOccurred"):
        parse_klass(CODES, bad_changes, codelist_id="k", title="k", sample=False, source="x")


def test_a_city_district_is_checked_within_its_municipality() -> None:
    assert _appointment_on("2024-03-01", "0301", "04").items[0].findings == []  # St. Hanshaugen
    assert _appointment_on("2024-03-01", "4601", "04").items[0].findings == []  # Fyllingsdalen
    assert _appointment_on("2024-03-01", "3301").items[0].findings == []  # no districts, none
    [unknown] = _appointment_on("2024-03-01", "0301", "42").items[0].findings
    assert (unknown.rule_id, unknown.path) == ("KOD-001", "/0/bydelNr")
    # Bergen's districts were renumbered with the municipality in 2020.
    [old] = _appointment_on("2024-03-01", "1201", "04").items[0].findings[-1:]
    assert (old.rule_id, old.path) == ("KOD-002", "/0/bydelNr")
    assert old.codelist_version == "bydelsnummer@2020-01-01 (sample)"
