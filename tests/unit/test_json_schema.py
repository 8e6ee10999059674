"""The generated JSON Schemas are valid draft 2020-12 and agree with the structure check on every
example, as judged by the standard ``jsonschema`` validator."""

from __future__ import annotations

import jsonschema
import pytest

from schemas.catalogue import Example, MessageModel, load_catalogue
from validators.rules import rule

CASES = [
    pytest.param(model, example, id=f"{model.key}:{example.name}")
    for model in load_catalogue()
    for example in model.examples
]


def _validator(model: MessageModel) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        model.json_schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _has_structure_error(example: Example) -> bool:
    expected = example.expected
    findings = list(expected.get("message", []))
    for item_findings in expected.get("items", {}).values():
        findings += item_findings
    for finding in findings:
        r = rule(finding["rule_id"])
        if r.level == "structure" and r.severity == "error":
            return True
    return False


@pytest.mark.parametrize("model", list(load_catalogue()), ids=lambda m: m.key)
def test_schema_is_valid_draft_2020_12(model: MessageModel) -> None:
    jsonschema.Draft202012Validator.check_schema(model.json_schema)
    assert model.json_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(("model", "example"), CASES)
def test_json_schema_agrees_with_the_examples(model: MessageModel, example: Example) -> None:
    errors = list(_validator(model).iter_errors(example.message))
    if example.valid:
        assert errors == []
    elif _has_structure_error(example):
        assert errors, f"{example.name} is structurally invalid but the JSON Schema accepts it"


def test_digit_strings_accept_integers_and_say_what_the_schema_cannot_check() -> None:
    model = load_catalogue().require("HST_Avtale", 1)
    org = model.json_schema["items"]["properties"]["orgNr"]
    assert "Identifier (orgnr)" in org["description"]
    assert not [k for k in org if k.startswith("x-")]  # strict validators refuse unknown keywords
    validator = jsonschema.Draft202012Validator(org)
    assert validator.is_valid("974152533")
    assert validator.is_valid(974152533)
    assert not validator.is_valid("97415253")
