"""Revealing what masking hides in rejected items shown to reviewers. The masking itself is
:mod:`identity.masking` (the gateway masks what it keeps too); its names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from identity.masking import (
    MASK,
    PERSONAL_IDENTIFIER_KINDS,
    MaskedDocument,
    item_prefix,
    looks_personal,
    mask,
    mask_text,
    personal_fields,
)
from identity.pseudonyms import Pseudonymiser
from review.errors import InvalidQuery
from statestore.review import ReviewRow

__all__ = [
    "MASK",
    "PERSONAL_IDENTIFIER_KINDS",
    "MaskedDocument",
    "as_sent",
    "item_prefix",
    "looks_personal",
    "mask",
    "mask_text",
    "personal_fields",
    "resolve",
    "reveal_value",
]


def resolve(value: Any, pointer: str) -> Any:
    """The value at a JSON pointer; KeyError when there is none."""
    node = value
    for part in _parts(pointer):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(pointer)
    return node


def _parts(pointer: str) -> Iterator[str]:
    if not pointer:
        return
    if not pointer.startswith("/"):
        raise KeyError(pointer)
    for raw in pointer[1:].split("/"):
        yield raw.replace("~1", "/").replace("~0", "~")


def as_sent(row: ReviewRow, identities: Pseudonymiser) -> tuple[Any, dict[str, Any]]:
    """The rejected item and its block as sent: opened from the sealed copy, or (rows indexed
    before there was one) as the row holds them."""
    if row.sealed is None:
        return row.item, row.block
    return identities.open_as_sent(row.receipt_id, row.item_index, row.sealed)


def reveal_value(row: ReviewRow, part: str, path: str, identities: Pseudonymiser) -> Any:
    """The unmasked value at ``path`` of a rejected item (``part`` "item") or of its block, as
    sent; the caller logs the reveal with its reason."""
    item, block = as_sent(row, identities)
    try:
        value = resolve(item if part == "item" else block, path)
    except KeyError:
        raise InvalidQuery(
            "unknown_path", "No value at that path", f"The item has nothing at {path!r}."
        ) from None
    if isinstance(value, dict | list):
        raise InvalidQuery(
            "not_a_value", "Reveal one value", "Point at a single value, not a group."
        )
    return value
