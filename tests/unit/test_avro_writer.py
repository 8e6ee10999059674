"""The generated Avro writer against fastavro, byte for byte.

Whenever the generated writer returns bytes they must be fastavro's bytes for the same datum; when
it declines (``NotPlain``), ``AvroCodec.encode`` must give exactly what fastavro gives, bytes or
error.
"""

from __future__ import annotations

import dataclasses
import io
import string
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import fastavro
import pytest
from fastavro.utils import generate_many
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.avro_writer import NotPlain, SplitWriter
from schemas.catalogue import load_catalogue
from schemas.codec import AvroCodec
from schemas.events import EventBuilder
from tests.unit.test_examples import CONTEXT as EXAMPLE_CONTEXT
from tests.unit.test_examples import example_events
from validators.engine import ModelValidator
from validators.findings import has_errors

CATALOGUE = load_catalogue()
MODELS = list(CATALOGUE)


EVENTS = [
    (model.event_codec, event.to_avro())
    for model in MODELS
    for example in model.examples
    for event in example_events(model, example)
]


def _same_as_fastavro(codec: AvroCodec, datum: Any) -> None:
    """``encode`` behaves exactly like fastavro: the same bytes, or an error where it errs."""
    try:
        expected: bytes | None = codec.encode_with_fastavro(datum)
    except Exception:  # fastavro's own refusal, whatever its type
        expected = None
    try:
        fast: bytes | None = codec._write(datum)
    except Exception:  # declined: encode() falls back to fastavro
        fast = None
    if fast is not None:
        assert fast == expected, "the generated writer wrote other bytes than fastavro"
    if expected is None:
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever fastavro raises
            codec.encode(datum)
    else:
        assert codec.encode(datum) == expected


def test_every_example_event_takes_the_generated_path_and_matches_fastavro() -> None:
    assert len(EVENTS) > 40
    for codec, datum in EVENTS:
        assert codec._write(datum) == codec.encode_with_fastavro(datum)


def test_the_envelope_codecs_match_fastavro() -> None:
    now = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    quarantined = {
        "receipt_id": "r-1",
        "item_index": 70_000,
        "path": "/0/avtaler/3",
        "unit": "974152533",
        "message_type": "HST_Avtale",
        "version": 1,
        "object_id": None,
        "recorded_time": now,
        "item_json": '{"avtaleId": "å' + "x" * 200 + '"}',
        "block_json": '{"orgNr": "974152533"}',
        "sealed": b"\x01\x02e1" + bytes(range(40)),
        "findings": [
            {
                "rule_id": "IDN-001",
                "severity": "error",
                "level": "identifier",
                "path": "/0/avtaler/3/person/fodselsNr",
                "message_nb": "Ugyldig fødselsnummer",
                "message_en": "Invalid national identity number",
                "codelist_version": None,
            }
        ]
        * 70,
    }
    assert CATALOGUE.quarantine_codec._write(quarantined) == (
        CATALOGUE.quarantine_codec.encode_with_fastavro(quarantined)
    )
    # A field left out, even one with a default, is fastavro's to fill in.
    del quarantined["block_json"]
    with pytest.raises(KeyError):
        CATALOGUE.quarantine_codec._write(quarantined)
    assert CATALOGUE.quarantine_codec.encode(quarantined) == (
        CATALOGUE.quarantine_codec.encode_with_fastavro(quarantined)
    )
    for codec in (CATALOGUE.poison_codec, CATALOGUE.receipt_update_codec):
        for datum in generate_many(codec.schema, 50):
            _same_as_fastavro(codec, datum)


ALL_TYPES: dict[str, Any] = {
    "type": "record",
    "name": "AllTypes",
    "namespace": "test.avro",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "ratio", "type": "float"},
        {"name": "amount", "type": "double"},
        {"name": "text", "type": "string"},
        {"name": "blob", "type": "bytes"},
        {"name": "nothing", "type": "null"},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {"name": "maybe", "type": ["null", "double"], "default": None},
        {"name": "maybe_text", "type": ["string", "null"], "default": "none"},
        {"name": "again", "type": "Colour"},
        {
            "name": "when",
            "type": {"type": "long", "logicalType": "timestamp-micros"},
        },
        {
            "name": "when_millis",
            "type": {"type": "long", "logicalType": "timestamp-millis"},
        },
        {
            "name": "children",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Child",
                    "fields": [
                        {"name": "name", "type": "string"},
                        {"name": "age", "type": ["null", "int"], "default": None},
                    ],
                },
            },
        },
    ],
}


def test_random_data_of_every_type_matches_fastavro() -> None:
    codec = AvroCodec(ALL_TYPES)
    written = 0
    for datum in generate_many(ALL_TYPES, 300):
        _same_as_fastavro(codec, datum)
        try:
            codec._write(datum)
            written += 1
        except NotPlain:
            pass
    assert written == 300, "generated data of these types is all plain"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("small", -(2**31)),
        ("small", 2**31 - 1),
        ("big", -(2**63)),
        ("big", 2**63 - 1),
        ("big", -1),
        ("big", 64),
        ("big", -65),
        ("small", 63),  # the last one-byte value written directly
        ("small", 64),
        ("text", "æøå" * 100),
        ("text", ""),
        ("maybe_text", "x" * 63),  # branch and length as one constant
        ("maybe_text", "x" * 64),
        ("maybe_text", "å" * 40),  # 80 bytes
        ("maybe_text", ""),
        ("tags", [str(i) for i in range(63)]),
        ("amount", 70),  # an int where a double is due: written as 70.0
        ("maybe", 3),
        ("tags", [str(i) for i in range(200)]),
        ("when", datetime(1900, 2, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))),
        ("when", 1_700_000_000_000_000),
        ("when_millis", datetime(2030, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC)),
        ("counts", {f"k{i}": i for i in range(100)}),
    ],
)
def test_edge_values_take_the_generated_path(field: str, value: Any) -> None:
    codec = AvroCodec(ALL_TYPES)
    datum = {**next(iter(generate_many(ALL_TYPES, 1))), field: value}
    assert codec._write(datum) == codec.encode_with_fastavro(datum)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("small", True),  # fastavro writes a bool as 1; the generated writer leaves it to it
        ("small", 2**31),  # beyond int: fastavro writes it as it is
        ("small", 1.0),
        ("amount", False),
        ("maybe", True),  # no branch validates: fastavro refuses
        ("flag", 1),
        ("text", None),  # required, no default: fastavro refuses
        ("text", b"bytes"),
        ("colour", "BLUE"),
        ("hash", b"12345"),
        ("when", datetime(2020, 1, 1)),  # naive: fastavro reads it as local time
        ("tags", ("a", "b")),
        ("children", [{"name": "x", "age": 2**40}]),
    ],
)
def test_unusual_values_are_fastavros_to_decide(field: str, value: Any) -> None:
    codec = AvroCodec(ALL_TYPES)
    datum = {**next(iter(generate_many(ALL_TYPES, 1))), field: value}
    with pytest.raises(Exception):  # noqa: B017, PT011 - declined, whatever the reason
        codec._write(datum)
    _same_as_fastavro(codec, datum)


def test_a_union_of_records_is_written_by_name() -> None:
    schema = {
        "type": "record",
        "name": "Holder",
        "fields": [
            {
                "name": "value",
                "type": [
                    {"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}]},
                    {"type": "record", "name": "B", "fields": [{"name": "b", "type": "string"}]},
                ],
            }
        ],
    }
    codec = AvroCodec(schema)
    for datum in ({"value": ("A", {"a": 5})}, {"value": ("B", {"b": "x"})}):
        assert codec._write(datum) == codec.encode_with_fastavro(datum)
    unnamed: list[dict[str, Any]] = [{"value": {"b": "x"}}, {"value": ("C", {"c": 1})}]
    for datum in unnamed:
        with pytest.raises(NotPlain):
            codec._write(datum)
        _same_as_fastavro(codec, datum)


def test_other_logical_types_are_written_plain_or_left_to_fastavro() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        ],
    }
    codec = AvroCodec(schema)
    plain = {"day": 19_000, "id": "6f1c2a34-0000-4000-8000-000000000000"}
    assert codec._write(plain) == codec.encode_with_fastavro(plain)
    converted = {"day": date(2024, 6, 1), "id": UUID("6f1c2a34-0000-4000-8000-000000000000")}
    with pytest.raises(Exception):  # noqa: B017, PT011 - declined: fastavro converts them
        codec._write(converted)
    assert codec.encode(converted) == codec.encode_with_fastavro(converted)
    assert fastavro.schemaless_reader(io.BytesIO(codec.encode(converted)[10:]), codec.parsed) == {
        "day": date(2024, 6, 1),
        "id": UUID("6f1c2a34-0000-4000-8000-000000000000"),
    }


anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(string.printable + "æøå", max_size=80)
    | st.binary(max_size=8)
    | st.datetimes(timezones=st.none() | st.just(UTC)),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=8), children, max_size=3)
        | st.tuples(st.sampled_from(["no.kpr.hst.avtale.v1.Avtale", "x"]), children)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(min_value=0, max_value=len(EVENTS) - 1),
    path_choice=st.integers(min_value=0, max_value=10_000),
    value=anything,
)
def test_any_value_anywhere_is_written_as_fastavro_writes_it(
    which: int, path_choice: int, value: Any
) -> None:
    codec, datum = EVENTS[which]
    # Replace one value somewhere in the event (envelope, context or payload) by anything.
    places: list[tuple[dict[str, Any], str]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                places.append((node, key))
                collect(child)
        elif isinstance(node, (list, tuple)):
            for child in node:
                collect(child)

    mutated = _deep_copy(datum)
    collect(mutated)
    parent, key = places[path_choice % len(places)]
    parent[key] = value
    _same_as_fastavro(codec, mutated)


def _deep_copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _deep_copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_deep_copy(v) for v in node]
    if isinstance(node, tuple):
        return tuple(_deep_copy(v) for v in node)
    return node


# -- the split writer: shared fields encoded once, the rest per datum ------------------------------


def _split_write(writer: SplitWriter, datum: dict[str, Any]) -> bytes:
    write = writer.bind({name: datum[name] for name in writer.fixed})
    varying = []
    for name in writer.varying:
        value = datum[name]
        varying.append(writer.encode_field(name, value) if name in writer.encoded else value)
    return write(*varying)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_split_writer_writes_what_the_whole_record_writer_writes(data: st.DataObject) -> None:
    codec = AvroCodec(ALL_TYPES)
    names = [f["name"] for f in ALL_TYPES["fields"]]
    fixed = data.draw(st.frozensets(st.sampled_from(names)))
    others = [n for n in names if n not in fixed]
    encoded = data.draw(st.frozensets(st.sampled_from(others))) if others else frozenset()
    writer = codec.split_writer(fixed, encoded)
    assert writer.fixed + writer.varying == tuple(
        [n for n in names if n in fixed] + [n for n in names if n not in fixed]
    )
    for datum in generate_many(ALL_TYPES, 5):
        assert _split_write(writer, datum) == codec.encode_with_fastavro(datum)
    # What the whole-record writer declines, the split one declines too.
    odd = {**next(iter(generate_many(ALL_TYPES, 1))), "small": True}
    with pytest.raises(NotPlain):
        _split_write(writer, odd)


def test_a_split_writer_refuses_fields_it_does_not_have() -> None:
    codec = AvroCodec(ALL_TYPES)
    with pytest.raises(ValueError, match="not in the record"):
        codec.split_writer(frozenset({"colour", "shade"}), frozenset())
    with pytest.raises(ValueError, match="both fixed and encoded"):
        codec.split_writer(frozenset({"colour"}), frozenset({"colour"}))


def test_every_example_event_is_encoded_by_its_builder_as_fastavro_encodes_it() -> None:
    recorded = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    checked = 0
    for model in MODELS:
        for example in model.examples:
            result = ModelValidator(model).validate(example.message, EXAMPLE_CONTEXT)
            build = EventBuilder(
                model,
                unit="974152533",
                receipt_id="r-1",
                body_sha256="0" * 64,
                recorded_time=recorded,
            )
            if has_errors(result.message_findings):
                continue  # refused as a whole: no events
            events = [build(item) for item in result.items if item.value is not None]
            for event in events:
                assert build.encode(event) == model.event_codec.encode_with_fastavro(
                    event.to_avro()
                )
            if events:
                assert build._write is not None, f"{model.key}: the shared fields were bound"
            checked += len(events)
    assert checked > 40


def test_an_event_the_split_writer_declines_is_encoded_as_fastavro_encodes_it() -> None:
    model = MODELS[0]
    recorded = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    example = next(e for e in model.examples if e.valid)
    result = ModelValidator(model).validate(example.message, EXAMPLE_CONTEXT)
    item = next(i for i in result.items if i.value is not None)
    build = EventBuilder(
        model, unit="974152533", receipt_id="r-1", body_sha256="0" * 64, recorded_time=recorded
    )
    event = build(item)
    # A naive valid time: fastavro reads it as local time; the generated path declines it.
    naive = dataclasses.replace(event, valid_time=datetime(2024, 1, 1, 8, 0))
    assert build.encode(naive) == model.event_codec.encode_with_fastavro(naive.to_avro())
    # Another builder's event (another receipt): its own shared fields, not this builder's.
    other = dataclasses.replace(event, receipt_id="r-2")
    assert build.encode(other) == model.event_codec.encode_with_fastavro(other.to_avro())
    assert build.encode(other) != build.encode(event)
