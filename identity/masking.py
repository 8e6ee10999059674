"""Masking personal values, for rejected items as quarantine and review keep and show them.

Two rules, both applied everywhere an item, its block or a finding message is shown or kept:

1. a field the message model marks as a personal identifier (``x-identifier`` fnr, dnr, hnr,
   fhnr or duf) is masked whatever its value — a rejected item may hold a malformed one;
2. any other value, or any run of digits in a text, that looks like a personal number (11 or 12
   digits, with or without a space after the birth date) is masked too, because a rejected item
   may have a fødselsnummer in the wrong field.

A masked value keeps its length, so a reviewer can see an identifier is too short or too long
without seeing it. The item as sent is sealed beside the masked copy (identity/pseudonyms.py) and
opened only for a logged reveal or a replay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from schemas.catalogue import MessageModel

# Direct person identifiers: fødselsnummer, D-, H- and FH-nummer, DUF-nummer.
PERSONAL_IDENTIFIER_KINDS = frozenset({"fnr", "dnr", "hnr", "fhnr", "duf"})
MASK = "•"
# 11 digits (fødselsnummer, D-, H-, FH-nummer), optionally "DDMMYY NNNNN", or 12 (DUF).
_PERSONAL_NUMBER = re.compile(r"(?<!\d)(?:\d{6} ?\d{5}|\d{12})(?!\d)")
# Without the space: the digits a person number is kept as (11, or 12 for DUF).
PERSON_NUMBER = re.compile(r"(?<!\d)(?:\d{11}|\d{12})(?!\d)")


def mask_text(text: str) -> str:
    """``text`` with every run of digits that looks like a personal number masked."""
    return _PERSONAL_NUMBER.sub(lambda m: MASK * len(m.group()), text)


def looks_personal(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    return _PERSONAL_NUMBER.fullmatch(str(value)) is not None


@dataclass(frozen=True, slots=True)
class MaskedDocument:
    value: Any  # the JSON value with personal values replaced by mask strings
    masked_paths: tuple[str, ...]  # JSON pointers (relative to the value) that were masked


def personal_fields(model: MessageModel) -> frozenset[tuple[str, ...]]:
    """Field-name paths (arrays as ``*``) the model marks as personal identifiers, below any
    record of the message — item records and blocks alike."""
    found: set[tuple[str, ...]] = set()
    named: dict[str, Any] = {}

    def walk(schema: Any, path: tuple[str, ...], seen: frozenset[str]) -> None:
        if isinstance(schema, str):
            if schema in named and schema not in seen:
                walk(named[schema], path, seen | {schema})
            return
        if isinstance(schema, list):
            for branch in schema:
                walk(branch, path, seen)
            return
        if not isinstance(schema, dict):
            return
        kind = schema.get("type")
        if kind == "record":
            named[schema["name"]] = schema
            if "namespace" in schema:
                named[f"{schema['namespace']}.{schema['name']}"] = schema
            for f in schema["fields"]:
                if f.get("x-identifier") in PERSONAL_IDENTIFIER_KINDS:
                    found.add((*path, f["name"]))
                walk(f["type"], (*path, f["name"]), seen)
        elif kind == "array":
            walk(schema["items"], (*path, "*"), seen)
        elif isinstance(kind, dict | list):
            walk(kind, path, seen)

    walk(model.schema, (), frozenset())
    return frozenset(found)


def mask(
    value: Any, personal: frozenset[tuple[str, ...]], prefix: tuple[str, ...]
) -> MaskedDocument:
    """Mask ``value``, which sits at field path ``prefix`` in its message (``("*", "avtale",
    "*")`` for an item of the ``avtale`` list, ``("*",)`` for a block)."""
    masked: list[str] = []

    def walk(node: Any, path: tuple[str, ...], pointer: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*path, k), f"{pointer}/{_escape(k)}") for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, "*"), f"{pointer}/{i}") for i, v in enumerate(node)]
        if node is None:
            return None
        if path in personal or looks_personal(node):
            masked.append(pointer)
            return MASK * len(str(node))
        if isinstance(node, str):
            return mask_text(node)
        return node

    return MaskedDocument(walk(value, prefix, ""), tuple(masked))


def item_prefix(item_path: str) -> tuple[str, ...]:
    """The field path of an item from its pointer in the message: ``/0/avtale/3`` →
    ``("*", "avtale", "*")``."""
    parts = item_path.strip("/").split("/")
    return tuple("*" if p.isdigit() else p for p in parts)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
