"""The structure check: normalisation, item splitting, and findings' paths and rule ids."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.catalogue import load_catalogue
from validators.rules import load_catalogue as load_rules
from validators.structure import INVALID, StructureCompiler, _Context, _string_node

MODEL = load_catalogue().require("HST_Avtale", 1)
validate_structure = StructureCompiler().compile_message(MODEL.schema)


def _valid() -> list[dict[str, Any]]:
    example = next(e for e in MODEL.examples if e.valid)
    return copy.deepcopy(example.message)


def test_numbers_are_read_as_zero_padded_digit_strings() -> None:
    message = _valid()
    message[0]["kommuneNr"] = 301
    message[0]["avtale"][0]["person"]["fodselsNr"] = 1019049880  # 01019049880 without its zero
    result = validate_structure(message)
    item = result.items[1]
    assert item.context["kommuneNr"] == "0301"
    assert item.value is not None
    assert item.value["person"]["fodselsNr"] == "01019049880"


def test_booleans_are_not_numbers() -> None:
    message = _valid()
    message[0]["avtale"][0]["oppmoteStatus"] = True
    result = validate_structure(message)
    [finding] = result.items[1].findings
    assert (finding.rule_id, finding.path) == ("STR-002", "/0/avtale/0/oppmoteStatus")


def test_defaults_fill_missing_optional_fields() -> None:
    message = _valid()
    del message[0]["bydelNr"]
    del message[0]["slettAvtale"]
    result = validate_structure(message)
    assert result.message_findings == []
    assert [i.path for i in result.items] == ["/0/avtale/0", "/0/avtale/1"]
    assert result.items[0].context["bydelNr"] is None
    assert result.items[0].value is not None
    assert result.items[0].value["journalId"] == "J-55521"
    assert result.items[1].value is not None
    assert result.items[1].value["journalId"] is None


def test_items_are_numbered_across_blocks_in_order() -> None:
    message = _valid() + _valid()
    result = validate_structure(message)
    assert [i.index for i in result.items] == list(range(6))
    assert result.items[3].path == "/1/slettAvtale/0"


def test_delete_list_maps_flag_to_action() -> None:
    message = _valid()
    message[0]["slettAvtale"].append({"avtaleId": "AVT-X", "erSlettet": False})
    result = validate_structure(message)
    deletes = [i for i in result.items if i.spec.array_field == "slettAvtale"]
    assert [i.spec.action_of(i.value or {}) for i in deletes] == ["delete", "restore"]


def test_item_that_is_not_an_object_is_rejected_alone() -> None:
    message = _valid()
    message[0]["avtale"].insert(0, "not an object")
    result = validate_structure(message)
    first = result.items[1]
    assert first.value is None
    assert [(f.rule_id, f.path) for f in first.findings] == [("STR-002", "/0/avtale/0")]
    assert first.object_id is None
    assert all(i.value is not None for i in result.items if i is not first)


def test_warnings_do_not_reject_an_item() -> None:
    message = _valid()
    message[0]["avtale"][0]["ekstra"] = 1
    item = validate_structure(message).items[1]
    assert [f.severity for f in item.findings] == ["warning"]
    assert item.value is not None
    assert "ekstra" not in item.value


def test_messages_are_in_norwegian_and_english() -> None:
    message = _valid()
    del message[0]["avtale"][0]["datoTid"]
    [finding] = validate_structure(message).items[1].findings
    assert finding.message_nb == "Feltet «datoTid» mangler."
    assert finding.message_en == "The field 'datoTid' is missing."


def test_every_rule_a_check_fires_is_in_the_catalogue() -> None:
    rules = load_rules()
    for rule_id in (
        "STR-001",
        "STR-002",
        "STR-003",
        "STR-004",
        "STR-005",
        "STR-006",
        "STR-007",
        "STR-008",
        "STR-009",
    ):
        assert rules[rule_id].level == "structure"


def test_enum_values_are_checked() -> None:
    schema = {
        "type": "array",
        "items": {
            "type": "record",
            "name": "Blokk",
            "namespace": "t",
            "fields": [
                {"name": "orgNr", "type": "string", "x-identifier": "orgnr"},
                {
                    "name": "ting",
                    "type": {
                        "type": "array",
                        "items": {
                            "type": "record",
                            "name": "Ting",
                            "fields": [
                                {"name": "id", "type": "string"},
                                {
                                    "name": "farge",
                                    "type": {
                                        "type": "enum",
                                        "name": "Farge",
                                        "symbols": ["RED", "BLUE"],
                                    },
                                },
                                {
                                    "name": "vekt",
                                    "type": ["null", "double"],
                                    "default": None,
                                    "x-minimum": 0,
                                },
                            ],
                        },
                    },
                    "x-item": {"objectId": "id", "action": "upsert"},
                },
            ],
        },
    }
    validate = StructureCompiler().compile_message(schema)
    result = validate(
        [
            {
                "orgNr": "1",
                "ting": [
                    {"id": "a", "farge": "GREEN", "vekt": -1},
                    {"id": "b", "farge": "RED", "vekt": 2},
                ],
            }
        ]
    )
    assert [(f.rule_id, f.path) for f in result.items[0].findings] == [
        ("STR-006", "/0/ting/0/farge"),
        ("STR-008", "/0/ting/0/vekt"),
    ]
    assert result.items[1].value == {"id": "b", "farge": "RED", "vekt": 2.0}


def test_unsupported_schema_constructs_fail_at_compile_time() -> None:
    with pytest.raises(NotImplementedError):
        StructureCompiler().compile_message({"type": "map", "values": "string"})


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(alphabet=st.characters(categories=["Nd"]), min_size=10, max_size=12),
        st.text(alphabet="0123456789\n٣²x", min_size=10, max_size=12),
        st.integers(min_value=-1, max_value=10**12),
    )
)
def test_a_digits_field_takes_what_its_pattern_takes(value: Any) -> None:
    """The inlined check of an ``x-digits`` field (``len(v) == n and v.isdecimal()``) gives what
    the field's own check, a ``^\\d{n}$`` match, gives: the same value and the same findings."""
    record = {
        "type": "record",
        "name": "Holder",
        "namespace": "test.digits",
        "fields": [{"name": "number", "type": "string", "x-digits": 11}],
    }
    check = StructureCompiler()._compile(record, namespace="", annotations={})
    inline, direct = _Context(), _Context()
    out = check({"number": value}, "", inline)
    expected = _string_node({"x-digits": 11})(value, "/number", direct)
    assert [(f.rule_id, f.path) for f in inline.findings] == [
        (f.rule_id, f.path) for f in direct.findings
    ]
    if expected is INVALID:
        assert out is INVALID
    else:
        assert out == {"number": expected}
