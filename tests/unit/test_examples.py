"""Every published example of every model runs through validation, the Avro round trip and the
fold, and produces exactly the findings its ``.expected.json`` names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.fold import FOLDS
from schemas.catalogue import Example, MessageModel, load_catalogue
from schemas.events import Event, EventBuilder
from statestore.history import HistoryEntry, fold_order, history_entry
from validators.codelists import CodeListRegistry, load_samples
from validators.engine import ModelValidator, ValidationContext
from validators.findings import has_errors

CASES = [
    pytest.param(model, example, id=f"{model.key}:{example.name}")
    for model in load_catalogue()
    for example in model.examples
]


def test_every_model_has_valid_and_invalid_examples() -> None:
    for model in load_catalogue():
        kinds = {e.valid for e in model.examples}
        assert kinds == {True, False}, f"{model.key} needs valid and invalid examples"


# Examples are judged on a fixed day, with the shipped sample code lists, as in production.
CONTEXT = ValidationContext(
    now=datetime(2026, 1, 15, 12, 0, tzinfo=UTC),
    allow_synthetic=False,
    codelists=CodeListRegistry(load_samples()),
)


@pytest.mark.parametrize(("model", "example"), CASES)
def test_example_findings(model: MessageModel, example: Example) -> None:
    result = ModelValidator(model).validate(example.message, CONTEXT)
    if example.valid:
        assert result.message_findings == []
        assert result.items, "a valid example has items"
        assert all(item.findings == [] and item.value is not None for item in result.items)
        return
    expected = example.expected
    assert expected, f"{example.name} needs {example.name}.expected.json"
    got_message = [{"rule_id": f.rule_id, "path": f.path} for f in result.message_findings]
    if expected["message_rejected"]:
        assert got_message == expected["message"]
        return
    assert got_message == []
    got_items = {
        item.path: [{"rule_id": f.rule_id, "path": f.path} for f in item.findings]
        for item in result.items
    }
    assert got_items == expected["items"]


def example_events(model: MessageModel, example: Example) -> list[Event]:
    """The events of an example's valid items (none when the message is refused as a whole)."""
    result = ModelValidator(model).validate(example.message, CONTEXT)
    if has_errors(result.message_findings):
        return []
    build = EventBuilder(
        model,
        unit="974152533",
        receipt_id="r-1",
        body_sha256="0" * 64,
        recorded_time=datetime(2024, 6, 1, 12, 0, tzinfo=UTC),
    )
    return [build(item) for item in result.items if item.value is not None]


@pytest.mark.parametrize(("model", "example"), CASES)
def test_example_events_round_trip_and_fold(model: MessageModel, example: Example) -> None:
    catalogue = load_catalogue()
    events = example_events(model, example)
    for event in events:
        encoded = model.event_codec.encode(event.to_avro())
        assert encoded[:2] == b"\xc3\x01"
        assert Event.from_avro(catalogue.codecs.decode(encoded)) == event
    # Each object's events, in order, fold into a state with one entry per event.
    fold = FOLDS[model.fold]
    histories: dict[str, list[HistoryEntry]] = {}
    for event in events:
        histories.setdefault(event.object_id, []).append(history_entry(event))
    for history in histories.values():
        history.sort(key=fold_order)
        folded = fold(history)
        assert len(folded.steps) == len(history)
        assert folded.last.entry.event_id == history[-1].event_id


def test_every_model_names_a_known_fold() -> None:
    for model in load_catalogue():
        assert model.fold in FOLDS, f"{model.key}: unknown x-fold {model.fold!r}"


def _undocumented(schema: object, where: str) -> list[str]:
    if isinstance(schema, list):
        return [m for branch in schema for m in _undocumented(branch, where)]
    if not isinstance(schema, dict):
        return []
    missing = []
    if schema.get("type") == "record":
        if not schema.get("doc"):
            missing.append(f"{where} (record {schema['name']})")
        for field in schema["fields"]:
            if not field.get("doc"):
                missing.append(f"{where}/{field['name']}")
            missing += _undocumented(field["type"], f"{where}/{field['name']}")
    elif schema.get("type") == "array":
        missing += _undocumented(schema["items"], f"{where}/*")
    return missing


@pytest.mark.parametrize("model", list(load_catalogue()), ids=lambda m: m.key)
def test_every_record_and_field_is_documented(model: MessageModel) -> None:
    assert model.doc
    assert _undocumented(model.schema, "") == []
    assert {"x-status", "x-sunset", "x-compatibility", "x-fold"} <= set(model.schema)
