"""Replacing direct person identifiers in accepted items by pseudonyms, and sealing them.

A pseudonym is ``<pseudonym key id>-<32 hex digits>``: the first 128 bits of
HMAC-SHA256 over the identifier's digits under the pseudonym key. The same person number gives
the same pseudonym whatever field, unit, message type or register it came in, so the register can
still link and count persons; without the key it cannot be computed from a number (a person
number has only about 10^9 possible values, so an unkeyed hash could be reversed by trying them
all). The identifier itself is sealed (:meth:`identity.keys.Keyset.seal`, authenticated with the
pseudonym) into a :class:`VaultEntry` for the identity vault.

Which fields: those a model marks with ``x-identifier`` of a direct person identifier kind
(:data:`PERSONAL_IDENTIFIER_KINDS`), found by walking each item record of the model's Avro
schema, through nested records, unions and arrays.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from identity.keys import Keyset, KeysetFile
from identity.masking import PERSONAL_IDENTIFIER_KINDS, item_prefix, mask, personal_fields
from schemas.catalogue import MessageModel

PSEUDONYM_BYTES = 16  # 128 bits, as 32 hex digits
_PSEUDONYM = re.compile(r"p[0-9]{1,8}-[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class IdentifierField:
    path: tuple[str, ...]  # field names from the item record down; "[]" steps into an array
    kind: str


@dataclass(frozen=True, slots=True)
class VaultEntry:
    pseudonym: str
    kind: str
    sealed: bytes  # the identifier's digits, sealed with the pseudonym as associated data


def identifier_fields(model: MessageModel) -> dict[str, tuple[IdentifierField, ...]]:
    """Per item array field of ``model``, the person identifier fields of its item record."""
    named: dict[str, Any] = {}
    items: dict[str, Any] = {}

    def visit(schema: Any) -> None:  # collect named records, and find the item records
        if isinstance(schema, list):
            for branch in schema:
                visit(branch)
        elif isinstance(schema, dict):
            if schema.get("type") == "record":
                named.setdefault(schema["name"], schema)
                for f in schema["fields"]:
                    visit(f["type"])
                    if "x-item" in f:
                        items[f["name"]] = _array_items(f["type"])
            elif schema.get("type") == "array":
                visit(schema["items"])

    visit(model.schema)
    out: dict[str, tuple[IdentifierField, ...]] = {}
    for spec in model.item_specs:
        record = _resolve(items.get(spec.array_field), named)
        out[spec.array_field] = tuple(_identifiers(record, (), named, set()))
    return out


def _array_items(schema: Any) -> Any:
    for branch in schema if isinstance(schema, list) else [schema]:
        if isinstance(branch, dict) and branch.get("type") == "array":
            return branch["items"]
    return None


def _resolve(schema: Any, named: dict[str, Any]) -> Any:
    return named.get(schema, schema) if isinstance(schema, str) else schema


def _identifiers(
    schema: Any, path: tuple[str, ...], named: dict[str, Any], seen: set[str]
) -> Iterator[IdentifierField]:
    schema = _resolve(schema, named)
    if isinstance(schema, list):
        for branch in schema:
            yield from _identifiers(branch, path, named, seen)
    elif isinstance(schema, dict) and schema.get("type") == "record":
        if schema["name"] in seen:  # a recursive type
            return
        for f in schema["fields"]:
            kind = f.get("x-identifier")
            if kind in PERSONAL_IDENTIFIER_KINDS:
                yield IdentifierField((*path, f["name"]), kind)
            else:
                yield from _identifiers(
                    f["type"], (*path, f["name"]), named, {*seen, schema["name"]}
                )
    elif isinstance(schema, dict) and schema.get("type") == "array":
        yield from _identifiers(schema["items"], (*path, "[]"), named, seen)


def pseudonym_of(keyset: Keyset, digits: str) -> str:
    mac = keyset.mac(b"person-identifier\x1f" + digits.encode("ascii"))
    # Hex, not base32: the standard library's base32 is Python code, and cost half of
    # pseudonymising an item.
    return f"{keyset.pseudonym_id}-{mac[:PSEUDONYM_BYTES].hex()}"


class Pseudonymiser:
    """Replaces the person identifiers of accepted items, for every model of a catalogue."""

    def __init__(
        self,
        keys: KeysetFile,
        models: list[MessageModel],
        *,
        enabled: bool = True,
        vaulted: Callable[[str], bool] = lambda pseudonym: False,
    ) -> None:
        # ``enabled=False`` stores identifiers as sent: only for measuring the cost (bench).
        self._enabled = enabled
        # Whether the vault is known to hold a pseudonym already: then it is not sealed again
        # (most persons are reported again and again).
        self._vaulted = vaulted
        self._keys = keys
        self._personal = {model.key: personal_fields(model) for model in models}
        # Per (model, item array field) how to find its identifiers; per model, under None,
        # those of every item record (for :meth:`stored`).
        self._plans: dict[tuple[str, str | None], _Plan] = {}
        for model in models:
            fields = identifier_fields(model)
            for array_field, of_array in fields.items():
                self._plans[model.key, array_field] = _Plan.of(of_array)
            every = tuple(dict.fromkeys(f for of_array in fields.values() for f in of_array))
            self._plans[model.key, None] = _Plan.of(every)

    def item(
        self, model: MessageModel, array_field: str, value: dict[str, Any]
    ) -> tuple[dict[str, Any], list[VaultEntry]]:
        """``value`` (a normalised item) with its identifiers replaced by pseudonyms, and the
        sealed identifiers. ``value`` itself is not changed."""
        return self._replace(self._plans.get((model.key, array_field), _NOTHING), value)

    def stored(
        self, model: MessageModel, value: dict[str, Any]
    ) -> tuple[dict[str, Any], list[VaultEntry]]:
        """As :meth:`item` for a value stored before pseudonymisation (``intake identities
        migrate``), of any of the model's item records; values that are pseudonyms already are
        left alone, so running it again changes nothing."""
        return self._replace(self._plans[model.key, None], value)

    def _replace(
        self, plan: _Plan, value: dict[str, Any]
    ) -> tuple[dict[str, Any], list[VaultEntry]]:
        if plan.empty or not self._enabled:
            return value, []
        keyset = self._keys.current()
        entries: list[VaultEntry] = []
        replaced: dict[str, Any] | None = None
        for parents, names in plan.flat:  # the models' kind: no array on the way
            parent: Any = value
            for part in parents:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):
                continue
            copied: dict[str, Any] | None = None
            for name, kind in names:
                digits = parent.get(name)
                if not isinstance(digits, str) or not digits or _is_pseudonym(digits):
                    continue
                if copied is None:  # copy the containers down to this record, once
                    if replaced is None:
                        replaced = dict(value)
                    copied = replaced
                    for part in parents:
                        copied[part] = dict(copied[part])
                        copied = copied[part]
                copied[name] = self._pseudonym(keyset, digits, kind, entries)
        if plan.nested:
            replaced = _copy_along(replaced or value, plan.nested)
            for field in plan.nested:
                for parent, name in _parents(replaced, field.path):
                    digits = parent.get(name)
                    if isinstance(digits, str) and digits and not _is_pseudonym(digits):
                        parent[name] = self._pseudonym(keyset, digits, field.kind, entries)
        return (value if replaced is None else replaced), entries

    def _pseudonym(self, keyset: Keyset, digits: str, kind: str, entries: list[VaultEntry]) -> str:
        """The pseudonym of ``digits``; its sealed identifier added to ``entries`` unless the
        vault is known to hold it."""
        pseudonym = pseudonym_of(keyset, digits)
        if not self._vaulted(pseudonym):
            entries.append(
                VaultEntry(pseudonym, kind, keyset.seal(digits.encode(), pseudonym.encode()))
            )
        return pseudonym

    def keyset(self) -> Keyset:
        return self._keys.current()

    def reveal(self, entry_sealed: bytes, pseudonym: str) -> str:
        return self._keys.current().open(entry_sealed, pseudonym.encode()).decode("ascii")

    def masked(self, model: MessageModel, value: Any, item_path: str | None) -> Any:
        """A rejected item (at ``item_path`` in its message) or, without a path, its block,
        with every personal value masked (:mod:`identity.masking`): what quarantine and review
        keep in the clear. Its depth must be one orjson writes (at most 254 levels)."""
        if not self._enabled:
            return value
        prefix = item_prefix(item_path) if item_path is not None else ("*",)
        return mask(value, self._personal[model.key], prefix).value

    def seal_as_sent(
        self, receipt_id: str, item_index: int, item_json: str, block_json: str
    ) -> bytes:
        """A rejected item and its block as sent (JSON), sealed for a logged reveal or a replay.
        The two are joined by a newline, which compact JSON never holds: no escaping, so a
        15 MB item seals to 15 MB and its record stays within the log's record size."""
        if not self._enabled:
            return b""
        payload = item_json.encode() + b"\n" + block_json.encode()
        return self._keys.current().seal(payload, _as_sent_context(receipt_id, item_index))

    def open_as_sent(self, receipt_id: str, item_index: int, sealed: bytes) -> tuple[Any, Any]:
        """The rejected item and its block as sent, from :meth:`seal_as_sent`'s bytes."""
        payload = self._keys.current().open(sealed, _as_sent_context(receipt_id, item_index))
        item_json, _, block_json = payload.partition(b"\n")
        return orjson.loads(item_json), orjson.loads(block_json)


def _is_pseudonym(value: str) -> bool:
    return value[0] == "p" and _PSEUDONYM.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to find a model's identifier fields in an item, worked out once per field set:
    fields on array-free paths grouped by the record holding them (one walk per record), and
    the fields under an array, walked generically."""

    flat: tuple[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ...]
    nested: tuple[IdentifierField, ...]

    @classmethod
    def of(cls, fields: tuple[IdentifierField, ...]) -> _Plan:
        groups: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        nested = []
        for field in fields:
            if "[]" in field.path:
                nested.append(field)
            else:
                groups.setdefault(field.path[:-1], []).append((field.path[-1], field.kind))
        return cls(tuple((k, tuple(v)) for k, v in groups.items()), tuple(nested))

    @property
    def empty(self) -> bool:
        return not self.flat and not self.nested


_NOTHING = _Plan((), ())


def _as_sent_context(receipt_id: str, item_index: int) -> bytes:
    return f"rejected-item\x1f{receipt_id}\x1f{item_index}".encode()


def _copy_along(value: dict[str, Any], fields: tuple[IdentifierField, ...]) -> dict[str, Any]:
    """A copy of ``value`` deep enough that replacing the identifiers leaves ``value`` as it was:
    the containers on the identifiers' paths are copied, everything else shared."""
    top = dict(value)
    for field in fields:
        _copy_path(top, field.path[:-1])
    return top


def _copy_path(node: Any, path: tuple[str, ...]) -> None:
    if not path:
        return
    head, rest = path[0], path[1:]
    if head == "[]":
        return  # arrays are copied by their parent step
    child = node.get(head) if isinstance(node, dict) else None
    if isinstance(child, dict):
        node[head] = dict(child)
        _copy_path(node[head], rest)
    elif isinstance(child, list) and rest and rest[0] == "[]":
        copied = [dict(c) if isinstance(c, dict) else c for c in child]
        node[head] = copied
        for element in copied:
            _copy_path(element, rest[1:])


def _parents(node: Any, path: tuple[str, ...]) -> Iterator[tuple[dict[str, Any], str]]:
    """Each (record, field name) that ``path`` leads to in ``node``."""
    if not isinstance(node, dict):
        return
    head, rest = path[0], path[1:]
    if not rest:
        yield node, head
        return
    child = node.get(head)
    if rest[0] == "[]":
        for element in child if isinstance(child, list) else ():
            yield from _parents(element, rest[1:]) if rest[1:] else ()
    else:
        yield from _parents(child, rest)
