"""JSON Schema (draft 2020-12) generated from a model's annotated Avro schema, for vendors whose
tooling speaks JSON Schema. Written by hand: Avro-to-JSON-Schema converters on PyPI know nothing
of our annotations. Named Avro types are inlined where used, so the result is one
self-contained schema that can also sit inside the OpenAPI document.

Annotations become constraints where JSON Schema can say them (patterns, lengths, bounds,
formats, digit strings that may also come as integers), with the same meaning as in the
structure check (:mod:`schemas.formats`). What JSON Schema cannot say — an identifier's control
digits, a code list on the item's clinical date, the business rules — is written in the
``description`` of the field (and of the whole schema), never as an unknown keyword: strict
validators (AJV's strict mode, for one) refuse those. The Avro schema keeps the annotations for
machines.
"""

from __future__ import annotations

from typing import Any

from schemas.formats import DATE_PATTERN, DATE_TIME_PATTERN, digits_pattern
from schemas.items import full_name

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_INT_BOUNDS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# What the receiver checks beyond this schema, and how the whole schema says so.
BEYOND = (
    "This schema checks the structure of a message as the receiver does (types, required "
    "fields, patterns, lengths, ranges, dates and timestamps; unknown fields are reported as "
    "warnings and not stored). The receiver also checks what JSON Schema cannot say: "
    "identifiers' control digits and birth dates, code lists on each item's clinical date, "
    "and the business rules (GET /v1/rules); a message needs at least one item in all; texts "
    "must not contain NUL (U+0000). A timestamp "
    "is ISO 8601 with an offset and a real date and time (no leap second 60)."
)


def to_json_schema(message_type: str, version: int, avro: dict[str, Any]) -> dict[str, Any]:
    converter = _Converter()
    body = converter.convert(avro, namespace="", annotations={})
    return {
        "$schema": DRAFT,
        "$id": f"urn:register-intake:message-type:{message_type}:{version}",
        "title": f"{message_type} v{version}",
        **body,
        "description": (body.get("description", "") + "\n\n" + BEYOND).strip(),
    }


class _Converter:
    def __init__(self) -> None:
        self._named: dict[str, dict[str, Any]] = {}

    def convert(self, schema: Any, namespace: str, annotations: dict[str, Any]) -> dict[str, Any]:
        if isinstance(schema, str):
            named = self._named.get(schema) or self._named.get(f"{namespace}.{schema}")
            if named is not None:
                return dict(named)
            return _primitive(schema, annotations)
        if isinstance(schema, list):
            return {"anyOf": [self.convert(b, namespace, annotations) for b in schema]}
        kind = schema["type"]
        if kind == "record":
            return self._record(schema, namespace)
        if kind == "array":
            out: dict[str, Any] = {
                "type": "array",
                "items": self.convert(schema["items"], namespace, {}),
            }
            return _with_doc(out, schema)
        if kind == "enum":
            enum = _with_doc({"type": "string", "enum": list(schema["symbols"])}, schema)
            self._named[full_name(schema, namespace)] = enum
            return enum
        return _primitive(kind, {**schema, **annotations})

    def _record(self, schema: dict[str, Any], namespace: str) -> dict[str, Any]:
        record_name = full_name(schema, namespace)
        own_namespace = record_name.rpartition(".")[0]
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in schema["fields"]:
            ann = {k: v for k, v in field.items() if k.startswith("x-")}
            prop = self.convert(field["type"], own_namespace, ann)
            notes = [field["doc"]] if "doc" in field else []
            notes += _beyond(ann)
            if notes:
                prop["description"] = " ".join(notes)
            if "default" in field:
                prop["default"] = field["default"]
            else:
                required.append(field["name"])
            properties[field["name"]] = prop
        out: dict[str, Any] = {"type": "object", "title": schema["name"]}
        _with_doc(out, schema)
        out["properties"] = properties
        if required:
            out["required"] = required
        self._named[record_name] = out
        return out


def _beyond(ann: dict[str, Any]) -> list[str]:
    """The field's annotations that JSON Schema cannot check, in words."""
    notes = []
    if "x-item" in ann:
        notes.append("Each element is a reported item with its own entry in the receipt.")
    if "x-identifier" in ann:
        notes.append(f"Identifier ({ann['x-identifier']}): the receiver checks its control digits.")
    if "x-codelist" in ann:
        notes.append(
            f"Code list {ann['x-codelist']} (GET /v1/codelists/{ann['x-codelist']}), checked "
            "against the version in force on the item's clinical date."
        )
    if "x-personal" in ann:
        notes.append("Personal data: masked for reviewers.")
    return notes


def _with_doc(out: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "doc" in schema:
        out["description"] = schema["doc"]
    return out


def _primitive(kind: str, ann: dict[str, Any]) -> dict[str, Any]:
    if kind == "null":
        return {"type": "null"}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind in _INT_BOUNDS:
        low, high = _INT_BOUNDS[kind]
        return {
            "type": "integer",
            "minimum": max(low, ann.get("x-minimum", low)),
            "maximum": min(high, ann.get("x-maximum", high)),
        }
    if kind in ("float", "double"):
        out: dict[str, Any] = {"type": "number"}
        if "x-minimum" in ann:
            out["minimum"] = ann["x-minimum"]
        if "x-maximum" in ann:
            out["maximum"] = ann["x-maximum"]
        return out
    if kind != "string":
        raise NotImplementedError(f"no JSON Schema for Avro type {kind!r}")
    digits = ann.get("x-digits")
    if digits is not None:
        return {
            "anyOf": [
                {"type": "string", "pattern": digits_pattern(digits)},
                {"type": "integer", "minimum": 0, "maximum": 10**digits - 1},
            ]
        }
    string: dict[str, Any] = {"type": "string"}
    if "x-pattern" in ann:
        string["pattern"] = ann["x-pattern"]
    if "x-minLength" in ann:
        string["minLength"] = ann["x-minLength"]
    if "x-maxLength" in ann:
        string["maxLength"] = ann["x-maxLength"]
    if ann.get("x-format") == "date-time":
        string["format"] = "date-time"
        string.setdefault("pattern", DATE_TIME_PATTERN)
    elif ann.get("x-format") == "date":
        string["format"] = "date"
        string.setdefault("pattern", DATE_PATTERN)
    return string
