"""The catalogue of published message models, loaded from ``schemas/models/<type>/<version>/``.

Each model folder holds ``schema.avsc`` (the single source of truth) and ``examples/``. From the
schema the catalogue derives the item layout, the published JSON Schema and the Avro schema of
the events the model produces. It describes models; checking an item against one is
:mod:`validators` (the structure check is compiled from ``MessageModel.schema`` there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from schemas.actions import ACTIONS
from schemas.codec import AvroCodec, CodecRegistry
from schemas.items import ItemSpec, item_specs
from schemas.jsonschema import to_json_schema
from schemas.wire import event_schema


@dataclass(frozen=True, slots=True)
class Example:
    name: str
    valid: bool
    message: Any
    # For invalid examples: the findings each must produce, as {"path", "rule_id"} pairs,
    # and whether the message as a whole is refused (422) rather than item by item.
    expected: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MessageModel:
    message_type: str
    version: int
    schema: Any
    item_specs: tuple[ItemSpec, ...]
    unit_field: str  # the unit block's organisation number, checked against the token
    fold: str  # how events fold into last-known state (x-fold), see consumers.fold
    event_codec: AvroCodec
    examples: tuple[Example, ...]
    json_schema: dict[str, Any]
    codelist_bindings: tuple[dict[str, str], ...]
    # What point-in-time statistics may group by: name -> (source, key), where source is
    # "unit", "month" (of the clinical time), "context" (the unit block) or "state" (a coded
    # field of the item, never a personal one).
    dimensions: dict[str, tuple[str, str]]

    @property
    def status(self) -> str:
        return str(self.schema.get("x-status", "active"))

    @property
    def sunset(self) -> date | None:
        value = self.schema.get("x-sunset")
        return date.fromisoformat(value) if value else None

    @property
    def compatibility(self) -> str:
        return str(self.schema.get("x-compatibility", ""))

    @property
    def key(self) -> str:
        return f"{self.message_type}/{self.version}"

    @property
    def doc(self) -> str:
        return str(self.schema.get("doc", "")) if isinstance(self.schema, dict) else ""


def _read_json(node: Traversable) -> Any:
    return json.loads(node.read_text(encoding="utf-8"))


def _load_examples(folder: Traversable) -> tuple[Example, ...]:
    examples: list[Example] = []
    for kind in ("valid", "invalid"):
        sub = folder / "examples" / kind
        if not sub.is_dir():
            continue
        for node in sorted(sub.iterdir(), key=lambda n: n.name):
            if not node.name.endswith(".json") or node.name.endswith(".expected.json"):
                continue
            stem = node.name.removesuffix(".json")
            expected_node = sub / f"{stem}.expected.json"
            expected = _read_json(expected_node) if expected_node.is_file() else {}
            examples.append(Example(stem, kind == "valid", _read_json(node), expected))
    return tuple(examples)


def _codelist_bindings(schema: Any, path: str) -> list[dict[str, str]]:
    """Where the model binds a value to a code list, as paths with ``*`` for array elements."""
    if isinstance(schema, list):
        return [b for branch in schema for b in _codelist_bindings(branch, path)]
    if not isinstance(schema, dict):
        return []
    if schema.get("type") == "array":
        return _codelist_bindings(schema["items"], f"{path}/*")
    if schema.get("type") != "record":
        return []
    out = []
    for f in schema["fields"]:
        field_path = f"{path}/{f['name']}"
        if "x-codelist" in f:
            out.append({"path": field_path, "codelist": str(f["x-codelist"])})
        out += _codelist_bindings(f["type"], field_path)
    return out


def _dimensions(schema: dict[str, Any]) -> dict[str, tuple[str, str]]:
    block = schema["items"]
    dims: dict[str, tuple[str, str]] = {"unit": ("unit", ""), "month": ("month", "")}
    for f in block["fields"]:
        if "x-item" not in f and "x-identifier" not in f:
            dims[f["name"]] = ("context", f["name"])
        if "x-item" not in f:
            continue
        for item_field in f["type"]["items"]["fields"]:
            kind = item_field["type"]
            coded = "x-codelist" in item_field or (
                isinstance(kind, dict) and kind.get("type") == "enum"
            )
            if coded and not item_field.get("x-personal"):
                dims[item_field["name"]] = ("state", item_field["name"])
    if schema.get("x-fold") == "iplos_service":
        dims["tjenesteStatus"] = ("state", "tjenesteStatus")
    return dims


def _unmapped_action_values(block: dict[str, Any], spec: ItemSpec) -> list[str]:
    """Values an item's action field can take that its action map does not cover."""
    if spec.action_field is None:
        return []
    array = next(f for f in block["fields"] if f["name"] == spec.array_field)
    field_type = next(
        f["type"] for f in array["type"]["items"]["fields"] if f["name"] == spec.action_field
    )
    if field_type == "boolean":
        values = ["true", "false"]
    elif isinstance(field_type, dict) and field_type.get("type") == "enum":
        values = list(field_type["symbols"])
    else:
        raise ValueError(
            f"{spec.array_field}.{spec.action_field}: an action field is a boolean or an enum"
        )
    return [v for v in values if v not in spec.action_map]


def _unit_field(block: dict[str, Any]) -> str:
    for f in block["fields"]:
        if f.get("x-identifier") == "orgnr":
            return str(f["name"])
    raise ValueError(f"{block['name']}: the unit block needs a field with x-identifier orgnr")


def _load_model(message_type: str, version: int, folder: Traversable) -> MessageModel:
    schema = _read_json(folder / "schema.avsc")
    specs = item_specs(schema)
    for spec in specs:
        unknown = spec.actions - ACTIONS
        if unknown:
            raise ValueError(f"{message_type} v{version}: unknown actions {sorted(unknown)}")
        unmapped = _unmapped_action_values(schema["items"], spec)
        if unmapped:
            raise ValueError(
                f"{message_type} v{version}: {spec.array_field} maps no action for {unmapped}"
            )
    return MessageModel(
        message_type=message_type,
        version=version,
        schema=schema,
        item_specs=specs,
        unit_field=_unit_field(schema["items"]),
        fold=str(schema["x-fold"]),
        json_schema=to_json_schema(message_type, version, schema),
        codelist_bindings=tuple(_codelist_bindings(schema, "")),
        dimensions=_dimensions(schema),
        event_codec=AvroCodec(event_schema(message_type, version, schema)),
        examples=_load_examples(folder),
    )


@dataclass(frozen=True)
class WireSchema:
    """A schema values are written with, and the logical topic they go to (``accepted`` of its
    model, ``quarantine`` or ``receipts``)."""

    codec: AvroCodec
    topic: str
    model: MessageModel | None

    @property
    def name(self) -> str:
        schema = self.codec.schema
        return f"{schema['namespace']}.{schema['name']}"

    @property
    def fingerprint(self) -> str:
        """The CRC-64-AVRO fingerprint as hex of the 8 bytes in a value's header."""
        return self.codec.fingerprint.hex()


class Catalogue:
    def __init__(self, models: list[MessageModel]) -> None:
        self._models = {(m.message_type, m.version): m for m in models}
        self.codecs = CodecRegistry()
        for model in models:
            self.codecs.register(model.event_codec)
        envelopes = resources.files("schemas") / "envelopes"
        self.quarantine_codec = AvroCodec(
            _read_json(envelopes / "quarantine.avsc"),
            earlier=[_read_json(envelopes / "quarantine.1.avsc")],  # before the sealed copy
        )
        self.poison_codec = AvroCodec(_read_json(envelopes / "poison.avsc"))
        self.receipt_update_codec = AvroCodec(_read_json(envelopes / "receipt_update.avsc"))
        for codec in (self.quarantine_codec, self.poison_codec, self.receipt_update_codec):
            self.codecs.register(codec)

    def wire_schemas(self) -> list[WireSchema]:
        """Every Avro schema a value on a topic is written with (:mod:`schemas.wire`)."""
        out = [WireSchema(m.event_codec, "accepted", m) for m in self]
        out.append(WireSchema(self.quarantine_codec, "quarantine", None))
        out.append(WireSchema(self.poison_codec, "quarantine", None))
        out.append(WireSchema(self.receipt_update_codec, "receipts", None))
        return out

    def get(self, message_type: str, version: int) -> MessageModel | None:
        return self._models.get((message_type, version))

    def require(self, message_type: str, version: int) -> MessageModel:
        model = self.get(message_type, version)
        if model is None:
            raise KeyError(f"{message_type} v{version} is not in the catalogue")
        return model

    def __iter__(self) -> Iterator[MessageModel]:
        return iter(sorted(self._models.values(), key=lambda m: (m.message_type, m.version)))


def load_catalogue_from(root: Traversable) -> Catalogue:
    """Every model under ``root`` (``<Type>/<version>/schema.avsc``)."""
    models = []
    for type_dir in sorted(root.iterdir(), key=lambda n: n.name):
        if not type_dir.is_dir() or type_dir.name.startswith(("_", ".")):
            continue
        for version_dir in sorted(type_dir.iterdir(), key=lambda n: n.name):
            is_model = version_dir.is_dir() and (version_dir / "schema.avsc").is_file()
            if is_model and version_dir.name.isdigit():
                models.append(_load_model(type_dir.name, int(version_dir.name), version_dir))
    return Catalogue(models)


@cache
def load_catalogue() -> Catalogue:
    """The published models that ship with the package."""
    return load_catalogue_from(resources.files("schemas") / "models")
