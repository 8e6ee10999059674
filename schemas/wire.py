"""The Avro schemas of what goes on the topics (the wire schemas), and their names.

Every value on a topic is Avro single-object encoded (``C3 01``, the writer schema's 8-byte
CRC-64-AVRO fingerprint, the body; :mod:`schemas.codec`), so a reader needs the writer's schema
to decode it. Those schemas are published (``GET /v1/wire-schemas``, ``intake schemas export``)
and named so that a reader can parse all of them together with every message schema:

* an event schema per model version, ``no.intake.events.<Type>.v<N>.Event``, whose unit block is
  ``...Context`` and whose every other named type (item records, their nested records and
  enums) is the message schema's full name under ``no.intake.events.<Type>.v<N>.``: the same
  fields, a name of its own (``payload_type`` keeps the message schema's name of the item
  record);
* the envelopes: ``no.intake.quarantine.v1.QuarantinedItem`` (quarantine topic),
  ``no.intake.quarantine.v1.PoisonRecord`` (a record a consumer could not use) and
  ``no.intake.receipts.v1.ReceiptUpdate`` (receipts topic).

The topic contract (keys, headers, which schema on which topic) is ``docs/topics.md``.
"""

from __future__ import annotations

import copy
from typing import Any

from schemas.items import full_name

EVENTS_NAMESPACE = "no.intake.events"
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def event_namespace(message_type: str, version: int | None) -> str:
    """Where a model version's event types are named; without a version for comparing two
    versions' events (schema resolution matches records by name)."""
    base = f"{EVENTS_NAMESPACE}.{message_type}"
    return f"{base}.v{version}" if version is not None else base


def event_type_name(namespace: str, message_full_name: str) -> str:
    """The event schema's name for a named type of the message schema."""
    return f"{namespace}.{message_full_name}"


def event_schema(
    message_type: str, version: int, message_schema: dict[str, Any], *, versioned: bool = True
) -> dict[str, Any]:
    """The Avro schema of one model's events: envelope, the unit block's scalars, the item.
    ``versioned=False`` leaves the version out of the names, for :mod:`schemas.compatibility`."""
    namespace = event_namespace(message_type, version if versioned else None)
    block = message_schema["items"]
    block_namespace = full_name(block, "").rpartition(".")[0]
    context = {
        "type": "record",
        "name": "Context",
        "namespace": namespace,
        "doc": "The reporting unit block the item came in, without its item lists.",
        "fields": [
            _renamed_field(f, block_namespace, namespace)
            for f in block["fields"]
            if "x-item" not in f
        ],
    }
    items = [
        _renamed(f["type"]["items"], block_namespace, namespace)
        for f in block["fields"]
        if "x-item" in f
    ]
    return {
        "type": "record",
        "name": "Event",
        "namespace": namespace,
        "doc": f"One accepted item of a {message_type} v{version} message.",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "receipt_id", "type": "string"},
            {"name": "item_index", "type": "int"},
            {"name": "unit", "type": "string"},
            {"name": "message_type", "type": "string"},
            {"name": "version", "type": "int"},
            {"name": "object_id", "type": "string"},
            {"name": "action", "type": "string"},
            {"name": "valid_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "recorded_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "clinical_time", "type": ["null", "string"], "default": None},
            {"name": "context", "type": context},
            {
                "name": "payload_type",
                "type": "string",
                "doc": "The message schema's full name of the item record.",
            },
            {"name": "payload", "type": items},
        ],
    }


def _renamed_field(field: dict[str, Any], enclosing: str, namespace: str) -> dict[str, Any]:
    out = copy.deepcopy(field)
    out["type"] = _renamed(field["type"], enclosing, namespace)
    return out


def _renamed(schema: Any, enclosing: str, namespace: str) -> Any:
    """``schema`` with every named type it defines or refers to renamed under ``namespace``
    (resolved as Avro does: a name without a dot is in the enclosing namespace)."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return schema
        full = schema if "." in schema else (f"{enclosing}.{schema}" if enclosing else schema)
        return event_type_name(namespace, full)
    if isinstance(schema, list):
        return [_renamed(branch, enclosing, namespace) for branch in schema]
    kind = schema.get("type")
    out = {k: copy.deepcopy(v) for k, v in schema.items() if k not in ("fields", "items")}
    if kind in ("record", "enum", "fixed"):
        original = full_name(schema, enclosing)
        own_namespace, _, simple = original.rpartition(".")
        out["name"] = simple
        out["namespace"] = event_type_name(namespace, own_namespace) if own_namespace else namespace
        out.pop("aliases", None)
        if kind == "record":
            out["fields"] = [_renamed_field(f, own_namespace, namespace) for f in schema["fields"]]
        return out
    if kind == "array":
        out["items"] = _renamed(schema["items"], enclosing, namespace)
        return out
    if kind == "map":
        out["values"] = _renamed(schema["values"], enclosing, namespace)
        return out
    if isinstance(kind, dict | list):  # {"type": {...}} wraps a schema
        out["type"] = _renamed(kind, enclosing, namespace)
    return out
