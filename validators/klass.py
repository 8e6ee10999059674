"""Statistics Norway's classifications from KLASS (data.ssb.no/api/klass), as versioned code lists:
the municipality classification (131) above all, whose numbers change with each reform (2020,
2024: merged, split and renumbered).

Two JSON documents of the KLASS API are read, exactly as it answers:

* ``/classifications/{id}/codes?from=…&to=…``: ``{"codes": [{"code", "name", "validFrom",
  "validTo", ...}]}``, one entry per code and validity period. ``validTo`` is the first day the
  code no longer holds (exclusive), or null while it holds;
* ``/classifications/{id}/changes?from=…``: ``{"codeChanges": [{"oldCode", "oldName",
  "newCode", "newName", "changeOccurred"}]}``, the correspondence between versions.

The codes become member states of a :class:`~validators.codelists.CodeList` (a code active from
``validFrom``, inactive from ``validTo``), so validation checks a municipality number against the
version in force on the item's clinical date like any code list, and the changes let statistics
map older numbers to a later version (:meth:`CodeList.as_of`). A document in another shape is
refused naming the line and the field; nothing of it is kept.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from validators.codelists import CodeChange, CodeList, CodeListFormatError, MemberState


def parse_klass(
    codes_text: str,
    changes_text: str | None = None,
    *,
    codelist_id: str,
    title: str,
    sample: bool,
    source: str,
) -> CodeList:
    codes = _entries(codes_text, "codes", source)
    states: list[MemberState] = []
    for n, entry in enumerate(codes):
        where = _Where(codes_text, "codes", n, entry)
        code = where.text("code")
        raw_name = entry.get("name")
        name = raw_name if isinstance(raw_name, str) else ""
        valid_from = where.day("validFrom")
        valid_to = where.optional_day("validTo")
        if valid_to is not None and valid_to <= valid_from:
            raise where.error("validTo", "is not after validFrom")
        states.append(MemberState(code, valid_from, True, name))
        if valid_to is not None:
            states.append(MemberState(code, valid_to, False, name))
    if not states:
        raise CodeListFormatError(f"{source}: no codes")
    changes: list[CodeChange] = []
    if changes_text is not None:
        for n, entry in enumerate(_entries(changes_text, "codeChanges", source)):
            where = _Where(changes_text, "codeChanges", n, entry)
            changes.append(
                CodeChange(
                    where.text("oldCode"), where.text("newCode"), where.day("changeOccurred")
                )
            )
    return CodeList(codelist_id, title, sample, source, _merged(states), changes=changes)


def _merged(states: list[MemberState]) -> list[MemberState]:
    """One state per (code, day): a code that ends and starts again on the same day (a new
    period in KLASS) stays active."""
    by_key: dict[tuple[str, date], MemberState] = {}
    for state in states:
        held = by_key.get((state.code, state.effective))
        if held is None or state.active:
            by_key[(state.code, state.effective)] = state
    return sorted(by_key.values(), key=lambda s: (s.code, s.effective))


def _entries(text: str, key: str, source: str) -> list[dict[str, Any]]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        at = f" line {line}" if line else ""
        raise CodeListFormatError(f"{source}:{at} not JSON ({exc})") from None
    entries = document.get(key) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise CodeListFormatError(
            f'{source}: line 1: field "{key}": a KLASS document has a list "{key}"'
        )
    return entries


class _Where:
    """One entry of a KLASS list, to read its fields and name where one is wrong."""

    def __init__(self, text: str, key: str, index: int, entry: Any) -> None:
        self._text, self._key, self._index = text, key, index
        self._entry = entry if isinstance(entry, dict) else {}
        if not isinstance(entry, dict):
            raise self.error("", "is not an object")

    def error(self, field: str, problem: str) -> CodeListFormatError:
        name = f"{self._key}[{self._index}]" + (f".{field}" if field else "")
        return CodeListFormatError(f"line {self._line()}: field {name} {problem}")

    def text(self, field: str) -> str:
        value = self._entry.get(field)
        if not isinstance(value, str) or not value.strip():
            raise self.error(field, "is missing or empty")
        return value.strip()

    def optional_day(self, field: str) -> date | None:
        return None if self._entry.get(field) is None else self.day(field)

    def day(self, field: str) -> date:
        value = self._entry.get(field)
        if not isinstance(value, str):
            raise self.error(field, "is not a date (yyyy-mm-dd)")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.error(field, f"is not a date (yyyy-mm-dd): {value[:20]!r}") from None

    def _line(self) -> int:
        """The line the entry starts on: where its n-th object opens in the list."""
        start = self._text.find(f'"{self._key}"')
        openings = [m.start() for m in re.finditer(r"\{", self._text[start:])] if start >= 0 else []
        # The first brace after the key opens the first entry (objects in entries nest no
        # deeper than KLASS's flat records; a nested object makes this a best guess).
        if self._index < len(openings):
            return self._text.count("\n", 0, start + openings[self._index]) + 1
        return 1
