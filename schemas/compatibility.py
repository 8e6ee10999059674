"""Schema evolution: a new version of a type must keep the promise its type makes
(``x-compatibility``) under Avro's schema-resolution rules, checked with the Apache Avro library.

* ``BACKWARD`` — readers of the new version can read data written with the old one;
* ``FORWARD`` — readers of the old version can read data written with the new one;
* ``FULL`` — both.

Both the message schema (what vendors send) and the derived event schema (what consumers read
from the log) are checked.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import avro.schema
import orjson
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.catalogue import Catalogue, MessageModel
from schemas.wire import event_schema

Compatibility = Literal["BACKWARD", "FORWARD", "FULL"]
COMPATIBILITIES: tuple[Compatibility, ...] = ("BACKWARD", "FORWARD", "FULL")


@dataclass(frozen=True, slots=True)
class Problem:
    message_type: str
    old_version: int
    new_version: int
    detail: str

    def __str__(self) -> str:
        return f"{self.message_type} v{self.old_version} → v{self.new_version}: {self.detail}"


def _parse(schema: Any) -> avro.schema.Schema:
    return avro.schema.parse(orjson.dumps(schema).decode())


def _can_read(reader: Any, writer: Any) -> list[str]:
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(_parse(reader), _parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    locations = sorted(result.locations)
    return [f"{m} (at {', '.join(locations) or '/'})" for m in sorted(result.messages)]


def compare(old: MessageModel, new: MessageModel, promise: Compatibility) -> list[str]:
    """What breaks the promise between two versions of one type, as readable sentences."""
    pairs = [
        ("message", old.schema, new.schema),
        (
            "event",
            # Without the version in the names: resolution matches records by name.
            event_schema(old.message_type, old.version, old.schema, versioned=False),
            event_schema(new.message_type, new.version, new.schema, versioned=False),
        ),
    ]
    problems: list[str] = []
    for what, old_schema, new_schema in pairs:
        if promise in ("BACKWARD", "FULL"):
            problems += [
                f"{what}: v{new.version} cannot read v{old.version} data: {p}"
                for p in _can_read(new_schema, old_schema)
            ]
        if promise in ("FORWARD", "FULL"):
            problems += [
                f"{what}: v{old.version} cannot read v{new.version} data: {p}"
                for p in _can_read(old_schema, new_schema)
            ]
    return problems


def promise_of(model: MessageModel) -> Compatibility:
    value = model.schema.get("x-compatibility") if isinstance(model.schema, dict) else None
    if value not in COMPATIBILITIES:
        raise ValueError(f"{model.key}: x-compatibility must be one of {COMPATIBILITIES}")
    promise: Compatibility = value
    return promise


def check_catalogue(catalogue: Catalogue) -> list[Problem]:
    by_type: dict[str, list[MessageModel]] = defaultdict(list)
    for model in catalogue:
        by_type[model.message_type].append(model)
    problems: list[Problem] = []
    for message_type, models in sorted(by_type.items()):
        models.sort(key=lambda m: m.version)
        promises = {promise_of(m) for m in models}
        if len(promises) > 1:
            problems.append(
                Problem(
                    message_type,
                    models[0].version,
                    models[-1].version,
                    f"versions promise different compatibility: {sorted(promises)}",
                )
            )
            continue
        promise = promises.pop()
        for old, new in itertools.pairwise(models):
            problems += [
                Problem(message_type, old.version, new.version, detail)
                for detail in compare(old, new, promise)
            ]
    return problems
