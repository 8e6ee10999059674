"""Code lists: SNOMED CT reference sets and national code lists, versioned by effective time.

A code list is a history of member states: (code, effective date, active). The version in force on
a date is the membership as of the latest effective date not after it; a code whose latest state is
inactive is an *inactive member* (its own finding), a code never seen is not a member.

Sources:

* RF2 simple refset files (SNOMED CT; UTF-8, tab-separated, header row, columns ``id effectiveTime
  active moduleId refsetId referencedComponentId``), Full or Snapshot;
* a TSV file with the header ``code display active effective`` (one row per member state);
* a JSON file ``{"id", "title", "sample", "versions": [{"effective", "members": [{"code",
  "display", "active"}]}]}``, where each version lists the members whose state it sets (a later
  version need only list what changes), and optionally ``"changes": [{"old_code", "new_code",
  "changed_on"}]``, codes replaced by others;
* Statistics Norway's KLASS JSON (codes and their changes), read by :mod:`validators.klass`.

Lists made for development and tests say ``"sample": true``, and findings name them as samples.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from typing import Literal

SourceFormat = Literal["rf2", "tsv", "json", "klass"]


@dataclass(frozen=True, slots=True)
class MemberState:
    code: str
    effective: date
    active: bool
    display: str = ""


@dataclass(frozen=True, slots=True)
class CodeChange:
    """A code replaced by another from a day (a municipality merged, split or renumbered)."""

    old_code: str
    new_code: str
    changed_on: date


_MEMO_MAX = 100_000  # (code, date) answers kept per list


@dataclass(frozen=True, slots=True)
class Membership:
    """What a code list says of one code on one date."""

    status: Literal["member", "inactive", "absent", "no_version"]
    version: str | None  # "<list id>@<effective date>", with " (sample)" for sample lists


@dataclass
class CodeList:
    id: str
    title: str
    sample: bool
    source: str
    states: list[MemberState] = field(default_factory=list)
    changes: list[CodeChange] = field(default_factory=list)  # the correspondence, if any
    _by_code: dict[str, tuple[list[date], list[MemberState]]] = field(default_factory=dict)
    _effective_dates: list[date] = field(default_factory=list)
    _memo: dict[tuple[str, date], Membership] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        by_code: dict[str, list[MemberState]] = {}
        for state in sorted(self.states, key=lambda s: (s.code, s.effective)):
            by_code.setdefault(state.code, []).append(state)
        self._by_code = {c: ([s.effective for s in ss], ss) for c, ss in by_code.items()}
        self._effective_dates = sorted({s.effective for s in self.states})
        self._memo.clear()

    @property
    def versions(self) -> list[date]:
        return list(self._effective_dates)

    def version_on(self, on: date) -> date | None:
        i = bisect.bisect_right(self._effective_dates, on)
        return self._effective_dates[i - 1] if i else None

    def version_label(self, effective: date) -> str:
        label = f"{self.id}@{effective.isoformat()}"
        return f"{label} (sample)" if self.sample else label

    def lookup(self, code: str, on: date) -> Membership:
        # Memoised: a message repeats its codes and dates, and a list does not change once
        # built (an import builds a new one). Codes are not personal data.
        key = (code, on)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            found = self._memo[key] = self._lookup(code, on)
        return found

    def _lookup(self, code: str, on: date) -> Membership:
        version = self.version_on(on)
        if version is None:
            return Membership("no_version", None)
        label = self.version_label(version)
        entry = self._by_code.get(code)
        if entry is None:
            return Membership("absent", label)
        dates, states = entry
        i = bisect.bisect_right(dates, on)
        if i == 0:
            return Membership("absent", label)
        return Membership("member" if states[i - 1].active else "inactive", label)

    def as_of(self, code: str, on: date) -> list[str]:
        """The code(s) that ``code`` had become by ``on``, following the changes up to that day
        (several when it was split; itself when nothing changed it)."""
        current = {code}
        for day in sorted({c.changed_on for c in self.changes if c.changed_on <= on}):
            targets: dict[str, set[str]] = {}
            for change in self.changes:
                if change.changed_on == day:
                    targets.setdefault(change.old_code, set()).add(change.new_code)
            current = {new for old in current for new in targets.get(old, {old})}
        return sorted(current)

    def members_on(self, on: date) -> list[MemberState]:
        out = []
        for dates, states in self._by_code.values():
            i = bisect.bisect_right(dates, on)
            if i:
                out.append(states[i - 1])
        return sorted(out, key=lambda s: s.code)


class CodeListRegistry:
    def __init__(self, lists: Iterable[CodeList] = ()) -> None:
        self._lists = {c.id: c for c in lists}

    def get(self, codelist_id: str) -> CodeList | None:
        return self._lists.get(codelist_id)

    def __iter__(self) -> Iterator[CodeList]:
        return iter(sorted(self._lists.values(), key=lambda c: c.id))

    def with_lists(self, lists: Iterable[CodeList]) -> CodeListRegistry:
        """A registry where ``lists`` replace lists of the same id."""
        return CodeListRegistry([*self._lists.values(), *lists])


class CodeListFormatError(ValueError):
    """A code-list file is not in the format it claims."""


def _date8(value: str) -> date:
    if len(value) != 8 or not value.isdigit():
        raise CodeListFormatError(f"effectiveTime must be YYYYMMDD, got {value!r}")
    return date(int(value[:4]), int(value[4:6]), int(value[6:]))


def parse_rf2(text: str, *, codelist_id: str, title: str, sample: bool, source: str) -> CodeList:
    rows = csv.reader(io.StringIO(text), delimiter="\t")
    header = next(rows, None)
    expected = ["id", "effectiveTime", "active", "moduleId", "refsetId", "referencedComponentId"]
    if header is None or header[:6] != expected:
        raise CodeListFormatError(f"an RF2 simple refset starts with the header {expected}")
    states = []
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) < 6 or row[2] not in ("0", "1"):
            raise CodeListFormatError(f"line {line}: not an RF2 simple refset row")
        states.append(MemberState(row[5], _date8(row[1]), row[2] == "1"))
    return CodeList(codelist_id, title, sample, source, states)


def parse_tsv(text: str, *, codelist_id: str, title: str, sample: bool, source: str) -> CodeList:
    rows = csv.DictReader(io.StringIO(text), delimiter="\t")
    if rows.fieldnames is None or not {"code", "active", "effective"} <= set(rows.fieldnames):
        raise CodeListFormatError("a code-list TSV has the header: code display active effective")
    states = []
    for line, row in enumerate(rows, start=2):
        try:
            states.append(
                MemberState(
                    row["code"],
                    date.fromisoformat(row["effective"]),
                    row["active"].strip().lower() in ("1", "true", "ja"),
                    row.get("display") or "",
                )
            )
        except ValueError as exc:
            raise CodeListFormatError(f"line {line}: {exc}") from exc
    return CodeList(codelist_id, title, sample, source, states)


def parse_json(text: str, *, source: str) -> CodeList:
    try:
        data = json.loads(text)
        states = [
            MemberState(
                m["code"],
                date.fromisoformat(v["effective"]),
                bool(m.get("active", True)),
                m.get("display", ""),
            )
            for v in data["versions"]
            for m in v["members"]
        ]
        changes = [
            CodeChange(c["old_code"], c["new_code"], date.fromisoformat(c["changed_on"]))
            for c in data.get("changes", [])
        ]
        return CodeList(
            data["id"],
            data.get("title", data["id"]),
            bool(data.get("sample")),
            source,
            states,
            changes=changes,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CodeListFormatError(f"not a code-list JSON document: {exc}") from exc


def load_samples() -> list[CodeList]:
    """The sample lists shipped for development and tests (every one marked as a sample)."""
    folder = resources.files("validators") / "codelists_samples"
    lists = []
    for node in sorted(folder.iterdir(), key=lambda n: n.name):
        if node.name.endswith(".rf2.txt"):
            meta = json.loads((folder / node.name.replace(".txt", ".meta.json")).read_text())
            lists.append(
                parse_rf2(
                    node.read_text(encoding="utf-8"),
                    codelist_id=meta["id"],
                    title=meta["title"],
                    sample=bool(meta.get("sample")),
                    source=node.name,
                )
            )
        elif node.name.endswith(".klass.json"):
            from validators.klass import parse_klass  # it builds on this module

            meta = json.loads((folder / node.name.replace(".json", ".meta.json")).read_text())
            changes = (folder / meta["changes"]).read_text(encoding="utf-8")
            lists.append(
                parse_klass(
                    node.read_text(encoding="utf-8"),
                    changes,
                    codelist_id=meta["id"],
                    title=meta["title"],
                    sample=bool(meta.get("sample")),
                    source=node.name,
                )
            )
        elif node.name.endswith(".json") and not node.name.endswith(
            (".meta.json", "-changes.json")
        ):
            lists.append(parse_json(node.read_text(encoding="utf-8"), source=node.name))
    return lists
