"""Code lists: formats, versions by effective time, inactive members."""

from __future__ import annotations

from datetime import date

import pytest

from validators.codelists import (
    CodeListFormatError,
    CodeListRegistry,
    load_samples,
    parse_json,
    parse_rf2,
    parse_tsv,
)

RF2 = (
    "id\teffectiveTime\tactive\tmoduleId\trefsetId\treferencedComponentId\n"
    "a\t20200131\t1\t51000202101\t51000202101\t80967001\n"
    "b\t20200131\t1\t51000202101\t51000202101\t66383009\n"
    "b2\t20230731\t0\t51000202101\t51000202101\t66383009\n"
    "c\t20230731\t1\t51000202101\t51000202101\t41565005\n"
)


def test_rf2_full_release_history_gives_versions() -> None:
    refset = parse_rf2(RF2, codelist_id="snomed-x", title="x", sample=False, source="f")
    assert refset.versions == [date(2020, 1, 31), date(2023, 7, 31)]
    before, after = date(2021, 1, 1), date(2024, 1, 1)
    assert refset.lookup("66383009", before).status == "member"
    assert refset.lookup("66383009", after).status == "inactive"
    assert refset.lookup("41565005", before).status == "absent"
    assert refset.lookup("41565005", after).status == "member"
    assert refset.lookup("80967001", date(2019, 12, 31)).status == "no_version"
    assert refset.lookup("80967001", after).version == "snomed-x@2023-07-31"
    assert refset.lookup("80967001", date(2020, 1, 31)).version == "snomed-x@2020-01-31"


def test_tsv_and_json_formats() -> None:
    tsv = parse_tsv(
        "code\tdisplay\tactive\teffective\n1\tDøgn\t1\t2015-01-01\n8\tUkjent\tfalse\t2024-01-01\n",
        codelist_id="volven-8406",
        title="8406",
        sample=True,
        source="t",
    )
    assert tsv.lookup("1", date(2024, 6, 1)).status == "member"
    assert tsv.lookup("1", date(2024, 6, 1)).version == "volven-8406@2024-01-01 (sample)"
    assert tsv.lookup("8", date(2024, 6, 1)).status == "inactive"
    doc = parse_json(
        '{"id": "x", "versions": [{"effective": "2020-01-01", "members": [{"code": "A"}]}]}',
        source="j",
    )
    assert doc.lookup("A", date(2020, 1, 1)).status == "member"


@pytest.mark.parametrize(
    "bad",
    [
        "not\ta\trefset\n",
        "id\teffectiveTime\tactive\tmoduleId\trefsetId\treferencedComponentId\n"
        "a\t2020-01-31\t1\tm\tr\t1\n",
    ],
)
def test_malformed_rf2_is_refused(bad: str) -> None:
    with pytest.raises(CodeListFormatError):
        parse_rf2(bad, codelist_id="x", title="x", sample=False, source="f")


def test_malformed_json_is_refused() -> None:
    with pytest.raises(CodeListFormatError):
        parse_json('{"id": "x"}', source="j")


def test_samples_cover_every_bound_code_list_and_say_they_are_samples() -> None:
    from schemas.catalogue import load_catalogue

    registry = CodeListRegistry(load_samples())
    bound = {b["codelist"] for m in load_catalogue() for b in m.codelist_bindings}
    assert bound <= {c.id for c in registry}
    assert all(c.sample for c in registry)


def test_imported_lists_override_samples() -> None:
    samples = CodeListRegistry(load_samples())
    real = parse_json(
        '{"id": "volven-9506", "versions": [{"effective": "2025-01-01",'
        ' "members": [{"code": "V"}]}]}',
        source="import",
    )
    registry = samples.with_lists([real])
    codelist = registry.get("volven-9506")
    assert codelist is not None
    assert codelist.sample is False
    assert codelist.lookup("V", date(2025, 2, 1)).status == "member"
