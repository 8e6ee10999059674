"""The validation engine: every level for one model, compiled once from its schema.

Levels run in order on each item (DESIGN §7); an item whose structure fails is not looked at
further, and an error at any level rejects the item:

* **structure** — :mod:`validators.structure` (the schema and its annotations);
* **identifier** — fields with ``x-identifier`` (:mod:`validators.identifiers`);
* **codelist** — fields with ``x-codelist``, against the version in force on the item's clinical
  date (:mod:`validators.codelists`);
* **business** — dates not in the future (unless ``x-allowFuture``), end not before start
  (``x-notBefore``), the reporting window, persons without a national identity, and the
  model-specific rules of :mod:`validators.business`.

Identifiers in the unit block are checked too; their errors reject the message.

Graduated enforcement: ``ValidationContext.enforcement`` maps a rule id to the date from which it
is an error; before that date its errors are reported as warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from schemas.catalogue import MessageModel
from validators.business import MODEL_RULES
from validators.codelists import CodeListRegistry
from validators.findings import Finding, has_errors
from validators.identifiers import (
    PersonIdKind,
    Problem,
    check_duf,
    check_hpr,
    check_orgnr,
    check_person_number,
    check_resh,
    check_sctid,
)
from validators.rules import Rule, load_catalogue
from validators.structure import ExtractedItem, StructureResult, field_value

PERSON_NUMBER_KINDS = frozenset({"fnr", "dnr", "hnr", "fhnr"})
NATIONAL_IDENTITY_KINDS = PERSON_NUMBER_KINDS | {"duf"}
KIND_NAMES = {
    "fnr": "fødselsnummer",
    "dnr": "D-nummer",
    "hnr": "H-nummer",
    "fhnr": "FH-nummer",
    "synthetic": "syntetisk testnummer",
}
CLOCK_SKEW = timedelta(minutes=5)

_PERSON_PROBLEM_RULES = {
    Problem.FORM: "IDN-001",
    Problem.CONTROL_DIGITS: "IDN-001",
    Problem.BIRTH_DATE: "IDN-002",
    Problem.FUTURE_BIRTH_DATE: "IDN-003",
    Problem.SYNTHETIC_IN_PRODUCTION: "IDN-004",
}
_SIMPLE_CHECKS = {
    "duf": (check_duf, "IDN-006"),
    "orgnr": (check_orgnr, "IDN-007"),
    "hpr": (check_hpr, "IDN-008"),
    "resh": (check_resh, "IDN-009"),
}


@dataclass(frozen=True, slots=True)
class ValidationContext:
    now: datetime
    allow_synthetic: bool
    codelists: CodeListRegistry
    reporting_window_days: int = 5 * 365
    enforcement: Mapping[str, date] = field(default_factory=dict)

    @property
    def today(self) -> date:
        return self.now.date()


@dataclass(frozen=True, slots=True)
class _Field:
    """An annotated field inside an item (or block): its path with ``*`` for array elements."""

    path: tuple[str, ...]
    annotations: Mapping[str, Any]
    pointer: str = ""  # the JSON pointer suffix, when the path crosses no array

    def values(self, record: Any) -> list[tuple[str, Any]]:
        """(JSON pointer suffix, value) for every non-null occurrence in ``record``."""
        if "*" in self.path:
            return _walk(record, self.path, "")
        node = record  # the common case, without the walk
        for part in self.path:
            if not isinstance(node, dict):
                return []
            node = node.get(part)
        return [] if node is None else [(self.pointer, node)]


def _walk(
    node: Any, path: tuple[str, ...], pointer: str, at: int = 0, out: list[Any] | None = None
) -> list[tuple[str, Any]]:
    """The non-null values at ``path`` (``*`` for every element of an array) under ``node``.
    A list is filled rather than a generator chained: this runs a few times for every item."""
    if out is None:
        out = []
    while at < len(path):
        head = path[at]
        if head == "*":
            if isinstance(node, list):
                for i, element in enumerate(node):
                    _walk(element, path, f"{pointer}/{i}", at + 1, out)
            return out
        if not isinstance(node, dict):
            return out
        node, pointer, at = node.get(head), f"{pointer}/{head}", at + 1
    if node is not None:
        out.append((pointer, node))
    return out


@dataclass(frozen=True, slots=True)
class _PersonGroup:
    """The national-identity fields of one person record (for BUS-004)."""

    record_path: tuple[str, ...]
    fields: tuple[str, ...]


@dataclass
class _Plan:
    identifiers: list[_Field] = field(default_factory=list)
    codes: list[_Field] = field(default_factory=list)
    times: list[_Field] = field(default_factory=list)
    not_before: list[_Field] = field(default_factory=list)
    persons: list[_PersonGroup] = field(default_factory=list)


def _collect(schema: Any, path: tuple[str, ...], plan: _Plan, named: dict[str, Any]) -> None:
    if isinstance(schema, str):
        schema = named.get(schema, schema)
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, path, plan, named)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "array":
        _collect(schema["items"], (*path, "*"), plan, named)
        return
    if schema.get("type") != "record":
        return
    named[schema["name"]] = schema
    person_fields = []
    for f in schema["fields"]:
        if "x-item" in f:
            continue  # item arrays are planned by themselves
        ann = {k: v for k, v in f.items() if k.startswith("x-")}
        field_path = (*path, f["name"])
        here = _Field(field_path, ann, "/" + "/".join(field_path))
        if "x-identifier" in ann:
            plan.identifiers.append(here)
            if ann["x-identifier"] in NATIONAL_IDENTITY_KINDS:
                person_fields.append(f["name"])
        if "x-codelist" in ann:
            plan.codes.append(here)
        if ann.get("x-format") in ("date", "date-time") and not ann.get("x-allowFuture"):
            plan.times.append(here)
        if "x-notBefore" in ann:
            plan.not_before.append(here)
        _collect(f["type"], (*path, f["name"]), plan, named)
    if person_fields:
        plan.persons.append(_PersonGroup(path, tuple(person_fields)))


def _item_records(schema: Any) -> dict[str, dict[str, Any]]:
    block = schema["items"]
    return {f["name"]: f["type"]["items"] for f in block["fields"] if "x-item" in f}


class ModelValidator:
    def __init__(self, model: MessageModel, rules: Mapping[str, Rule] | None = None) -> None:
        self.model = model
        catalogue = rules if rules is not None else load_catalogue()
        self._rules = {rid: r for rid, r in catalogue.items() if r.applies(model.key)}
        named: dict[str, Any] = {}
        self._block = _Plan()
        _collect(model.schema["items"], (), self._block, named)
        self._items: dict[str, _Plan] = {}
        for array_field, record in _item_records(model.schema).items():
            plan = _Plan()
            _collect(record, (), plan, named)
            self._items[array_field] = plan
        self._model_rules = MODEL_RULES.get(model.message_type, [])

    def validate(self, message: Any, ctx: ValidationContext) -> StructureResult:
        result = self.model.validate_structure(message)
        if has_errors(result.message_findings):
            return result
        checked_blocks: set[str] = set()
        for item in result.items:
            block_pointer = "/" + item.path.split("/")[1]
            if block_pointer not in checked_blocks:
                checked_blocks.add(block_pointer)
                result.message_findings.extend(
                    self._identifiers(self._block, item.context, block_pointer, ctx)
                )
            if item.value is not None:
                self._check_item(item, ctx)
        return result

    def _check_item(self, item: ExtractedItem, ctx: ValidationContext) -> None:
        value = item.value
        assert value is not None
        plan = self._items[item.spec.array_field]
        on = self._clinical_date(item, ctx)
        findings = self._identifiers(plan, value, item.path, ctx)
        # A malformed identifier is not looked up in its code list as well.
        malformed = {f.path for f in findings if f.severity == "error"}
        findings += [
            f for f in self._codes(plan, value, item.path, on, ctx) if f.path not in malformed
        ]
        findings += self._business(plan, item, on, ctx)
        if findings:
            item.findings.extend(findings)
            if has_errors(item.findings):
                item.value = None

    # -- helpers -----------------------------------------------------------------------------

    def _finding(
        self,
        ctx: ValidationContext,
        rule_id: str,
        path: str,
        codelist_version: str | None = None,
        **params: Any,
    ) -> Finding | None:
        rule = self._rules.get(rule_id)
        if rule is None:
            return None  # the rule does not apply to this model
        finding = rule.finding(path, codelist_version, **params)
        from_date = ctx.enforcement.get(rule_id)
        if finding.severity == "error" and from_date is not None and ctx.today < from_date:
            finding = Finding(
                finding.rule_id,
                "warning",
                finding.level,
                finding.path,
                finding.message_nb,
                finding.message_en,
                finding.codelist_version,
            )
        return finding

    def _add(self, out: list[Finding], finding: Finding | None) -> None:
        if finding is not None:
            out.append(finding)

    def _clinical_date(self, item: ExtractedItem, ctx: ValidationContext) -> date:
        field_name = item.spec.clinical_time_field
        raw = field_value(item.value or {}, field_name) if field_name else None
        if isinstance(raw, str):
            return date.fromisoformat(raw[:10])
        return ctx.today

    def _identifiers(
        self, plan: _Plan, record: Any, base: str, ctx: ValidationContext
    ) -> list[Finding]:
        out: list[Finding] = []
        for spec in plan.identifiers:
            kind = spec.annotations["x-identifier"]
            for pointer, raw in spec.values(record):
                value, path = str(raw), base + pointer
                if kind in PERSON_NUMBER_KINDS:
                    check = check_person_number(
                        value, allow_synthetic=ctx.allow_synthetic, today=ctx.today
                    )
                    if check.problem is not None:
                        self._add(
                            out, self._finding(ctx, _PERSON_PROBLEM_RULES[check.problem], path)
                        )
                    elif (
                        check.kind is not None
                        and check.kind != kind
                        and not (check.kind is PersonIdKind.SYNTHETIC and kind == "fnr")
                    ):
                        self._add(
                            out,
                            self._finding(
                                ctx,
                                "IDN-005",
                                path,
                                expected=KIND_NAMES[kind],
                                actual=KIND_NAMES[check.kind],
                            ),
                        )
                elif kind == "sctid":
                    problem = check_sctid(value)
                    if problem is Problem.SCTID_PARTITION:
                        self._add(out, self._finding(ctx, "IDN-011", path, partition=value[-3:-1]))
                    elif problem is not None:
                        self._add(out, self._finding(ctx, "IDN-010", path))
                elif kind in _SIMPLE_CHECKS:
                    checker, rule_id = _SIMPLE_CHECKS[kind]
                    if checker(value) is not None:
                        self._add(out, self._finding(ctx, rule_id, path))
        return out

    def _codes(
        self, plan: _Plan, record: Any, base: str, on: date, ctx: ValidationContext
    ) -> list[Finding]:
        out: list[Finding] = []
        on_text = on.isoformat()
        for spec in plan.codes:
            codelist_id = spec.annotations["x-codelist"]
            codelist = ctx.codelists.get(codelist_id)
            for pointer, raw in spec.values(record):
                path, code = base + pointer, str(raw)
                if codelist is None:
                    self._add(out, self._finding(ctx, "KOD-004", path, codelist=codelist_id))
                    continue
                found = codelist.lookup(code, on)
                if found.status == "absent" and "." in code:  # ICD-10 is stored without dots
                    found = codelist.lookup(code.replace(".", ""), on)
                if found.status == "member":
                    continue
                params = {"code": code, "codelist": codelist_id, "on": on_text}
                if found.status == "absent":
                    self._add(out, self._finding(ctx, "KOD-001", path, found.version, **params))
                elif found.status == "inactive":
                    self._add(out, self._finding(ctx, "KOD-002", path, found.version, **params))
                elif found.status == "no_version":
                    self._add(out, self._finding(ctx, "KOD-003", path, None, **params))
        return out

    def _business(
        self, plan: _Plan, item: ExtractedItem, on: date, ctx: ValidationContext
    ) -> list[Finding]:
        value = item.value
        assert value is not None
        out: list[Finding] = []
        latest = ctx.now + CLOCK_SKEW
        for spec in plan.times:
            for pointer, raw in spec.values(value):
                if _in_future(str(raw), latest, ctx.today):
                    self._add(out, self._finding(ctx, "BUS-001", item.path + pointer, value=raw))
        for spec in plan.not_before:
            start_field = spec.annotations["x-notBefore"]
            start = value.get(start_field)
            for pointer, raw in spec.values(value):
                if start is not None and _instant(str(raw)) < _instant(str(start)):
                    self._add(
                        out,
                        self._finding(ctx, "BUS-002", item.path + pointer, value=raw, start=start),
                    )
        if item.spec.clinical_time_field and on < ctx.today - timedelta(
            days=ctx.reporting_window_days
        ):
            self._add(
                out,
                self._finding(
                    ctx,
                    "BUS-003",
                    f"{item.path}/{item.spec.clinical_time_field.replace('.', '/')}",
                    value=on.isoformat(),
                    days=ctx.reporting_window_days,
                ),
            )
        for group in plan.persons:
            for pointer, person in _walk(value, group.record_path, ""):
                if isinstance(person, dict) and all(person.get(f) is None for f in group.fields):
                    self._add(
                        out,
                        self._finding(
                            ctx, "BUS-004", item.path + pointer, fields=", ".join(group.fields)
                        ),
                    )
        for model_rule in self._model_rules:
            for rule_id, pointer, params in model_rule(value):
                self._add(out, self._finding(ctx, rule_id, item.path + pointer, **params))
        return out


def _instant(value: str) -> datetime:
    """A comparable instant: dates count as midnight UTC, date-times as given."""
    if len(value) == 10:
        return datetime.fromisoformat(value + "T00:00:00+00:00")
    return datetime.fromisoformat(value)


def _in_future(value: str, latest: datetime, today: date) -> bool:
    if len(value) == 10:
        return date.fromisoformat(value) > today
    return datetime.fromisoformat(value) > latest
