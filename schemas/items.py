"""Reportable items as a message model describes them: which arrays of a message hold items
(the ``x-item`` annotation), how an item's object id, action and times are read, and Avro's rule
for a named type's full name.

Validation (:mod:`validators.structure`) splits a message into items by these specs; events
(:mod:`schemas.events`) are made from the items it accepts, seen through :class:`ModelItem`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """How the elements of one item array become events (the ``x-item`` annotation).

    ``objectId``, ``validTime`` and ``clinicalTime`` name fields of the item, dotted for nested
    ones (``tjeneste.tjenesteId``). ``action`` is either fixed (``"upsert"``) or read from a field
    through a map: ``{"field": "erSlettet", "map": {"true": "delete", "false": "restore"}}``
    (booleans are looked up as ``"true"``/``"false"``).
    """

    array_field: str
    record_name: str  # full Avro name of the item record
    object_id_field: str
    action: str | None  # a fixed action, or None when read from ``action_field``
    action_field: str | None
    action_map: dict[str, str]
    clinical_time_field: str | None
    valid_time_field: str | None

    @classmethod
    def from_annotation(cls, array_field: str, record_name: str, spec: dict[str, Any]) -> ItemSpec:
        action = spec["action"]
        fixed = action if isinstance(action, str) else None
        return cls(
            array_field=array_field,
            record_name=record_name,
            object_id_field=spec["objectId"],
            action=fixed,
            action_field=None if fixed else action["field"],
            action_map={} if fixed else dict(action["map"]),
            clinical_time_field=spec.get("clinicalTime"),
            valid_time_field=spec.get("validTime"),
        )

    @property
    def actions(self) -> frozenset[str]:
        return frozenset([self.action]) if self.action else frozenset(self.action_map.values())

    def action_of(self, value: dict[str, Any]) -> str:
        if self.action is not None:
            return self.action
        assert self.action_field is not None
        raw = field_value(value, self.action_field)
        key = str(raw).lower() if isinstance(raw, bool) else str(raw)
        return self.action_map[key]


def field_value(record: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted field path of a normalised record, or None where a part is absent."""
    if "." not in dotted:  # the common case, without the split
        return record.get(dotted) if isinstance(record, dict) else None
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class ModelItem(Protocol):
    """An item of a message as events are made from it: its spec, its normalised value (None
    when it failed validation), the scalars of the block it came in, and its position."""

    @property
    def spec(self) -> ItemSpec: ...

    @property
    def value(self) -> dict[str, Any] | None: ...

    @property
    def context(self) -> dict[str, Any]: ...

    @property
    def index(self) -> int: ...


def item_specs(message_schema: dict[str, Any]) -> tuple[ItemSpec, ...]:
    """The item arrays of a message schema (an array of unit blocks), in field order."""
    block = message_schema["items"]
    namespace = full_name(block, "").rpartition(".")[0]
    specs = []
    for f in block["fields"]:
        if "x-item" not in f:
            continue
        items = f["type"]["items"] if isinstance(f["type"], dict) else None
        if not (isinstance(items, dict) and items.get("type") == "record"):
            raise ValueError(f"{f['name']}: x-item arrays must hold an inline record")
        specs.append(ItemSpec.from_annotation(f["name"], full_name(items, namespace), f["x-item"]))
    return tuple(specs)


def full_name(schema: dict[str, Any], namespace: str) -> str:
    """An Avro named type's full name, as the specification resolves it."""
    name: str = schema["name"]
    if "." in name:
        return name
    ns = schema.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name
