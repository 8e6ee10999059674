"""The validation engine: every level for one model, compiled once from its schema.

Levels run in order on each item (DESIGN §7); an item whose structure fails is not looked at
further, and an error at any level rejects the item:

* **structure** — :mod:`validators.structure` (the schema and its annotations), compiled here
  from the model's schema;
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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from schemas.catalogue import MessageModel
from schemas.items import field_value
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
from validators.structure import ExtractedItem, StructureCompiler, StructureResult

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
    # Derived once per context (one per message), read for every item:
    today: date = field(init=False)
    latest: datetime = field(init=False)  # the latest instant not "in the future"
    earliest_clinical: date = field(init=False)  # the start of the reporting window
    # Yesterday: a date or date-time written "YYYY-MM-DD…" on a day before it (such text compares
    # as the dates do) has passed at any UTC offset (under a day), so BUS-001 need not parse it.
    past_before: str = field(init=False)

    def __post_init__(self) -> None:
        today = self.now.date()
        object.__setattr__(self, "today", today)
        object.__setattr__(self, "latest", self.now + CLOCK_SKEW)
        object.__setattr__(
            self, "earliest_clinical", today - timedelta(days=self.reporting_window_days)
        )
        object.__setattr__(self, "past_before", (today - timedelta(days=1)).isoformat())


@dataclass(frozen=True, slots=True)
class _Field:
    """An annotated field inside an item (or block): its path with ``*`` for array elements."""

    path: tuple[str, ...]
    annotations: Mapping[str, Any]
    # The annotations the rule checks read for every value, looked up once:
    identifier: str | None = None  # x-identifier
    codelist: str | None = None  # x-codelist
    not_before: str | None = None  # x-notBefore
    # x-codePrefix: a sibling field whose value comes before this one's in the code list's code
    # (a city district, bydelNr 01, is 030101 in Oslo, 0301, in Statistics Norway's list).
    code_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class _PersonGroup:
    """The national-identity fields of one person record (for BUS-004)."""

    record_path: tuple[str, ...]
    fields: tuple[str, ...]


Found = Sequence[tuple[Any, str, Any]]  # (field or person group, JSON pointer suffix, value)


@dataclass(slots=True)
class _Values:
    """The non-null values of a plan's fields in one record, each with where it was found."""

    identifiers: Found
    codes: Found
    times: Found
    not_before: Found
    persons: Found


@dataclass
class _Plan:
    identifiers: list[_Field] = field(default_factory=list)
    codes: list[_Field] = field(default_factory=list)
    times: list[_Field] = field(default_factory=list)
    not_before: list[_Field] = field(default_factory=list)
    persons: list[_PersonGroup] = field(default_factory=list)
    gather: Callable[[Any], _Values] = field(init=False)

    def compile(self) -> None:
        """``gather(record)``: every field's values in one generated function, nested lookups
        and loops unrolled from the paths (this runs for every item; walking each path
        generically took a fifth of the rule checks' time). A member outside any list is looked
        up once however many fields lie under it. Values come in the order of the plan's
        fields, each field's in document order."""
        categories = ("identifiers", "codes", "times", "not_before", "persons")
        body: list[str] = []
        names: dict[str, Any] = {"_Values": _Values}
        members: dict[tuple[str, ...], str] = {(): "r"}  # member path → the local holding it
        groups: list[tuple[str, list[tuple[Any, tuple[str, ...]]]]] = [
            ("identifiers", [(f, f.path) for f in self.identifiers]),
            ("codes", [(f, f.path) for f in self.codes]),
            ("times", [(f, f.path) for f in self.times]),
            ("not_before", [(f, f.path) for f in self.not_before]),
            ("persons", [(g, g.record_path) for g in self.persons]),
        ]
        for category, entries in groups:
            for tag, path in entries:
                tag_name = f"t{len(names)}"
                names[tag_name] = tag
                plain = path.index("*") if "*" in path else len(path)
                node = _member_source(path[:plain], members, body)
                pointer = "".join(f"/{part}" for part in path[:plain])
                body += _walk_source(path[plain:], node, pointer, category, tag_name)
        lines = [
            "def gather(r):",
            # A category the plan has no fields for stays the empty tuple: no list per record.
            f"    {', '.join(categories)} = "
            f"{', '.join('[]' if dict(groups)[c] else '()' for c in categories)}",
            "    if isinstance(r, dict):",
            *["        " + line for line in body or ["pass"]],
            f"    return _Values({', '.join(categories)})",
        ]
        source = "\n".join(lines) + "\n"
        exec(compile(source, "<rule plan>", "exec"), names)  # noqa: S102 - generated from the schema
        self.gather = names["gather"]


def _member_source(
    path: tuple[str, ...], members: dict[tuple[str, ...], str], body: list[str]
) -> str:
    """The local that holds the member at ``path`` (no lists on the way) under the record ``r``,
    or None where something on the way is missing or not an object; appends to ``body`` the
    lookups not made before."""
    if path in members:
        return members[path]
    parent = _member_source(path[:-1], members, body)
    name, local = path[-1], f"m{len(members)}"
    if not name.isidentifier():
        raise ValueError(f"field name {name!r} cannot be in a generated path")
    if parent == "r":  # checked to be an object once, at the top
        body.append(f"{local} = r.get({name!r})")
    else:
        body.append(f"{local} = {parent}.get({name!r}) if isinstance({parent}, dict) else None")
    members[path] = local
    return local


def _walk_source(
    path: tuple[str, ...], node: str, pointer: str, target: str, tag: str
) -> list[str]:
    """Source that appends ``(tag, pointer, value)`` to ``target`` for every non-null value at
    ``path`` under the local ``node``, found at ``pointer`` (``*`` for every element of a list;
    anything not a dict or list where the path goes on has no values)."""
    lines: list[str] = []
    indent = ""
    for depth, part in enumerate(path):
        child = f"n{depth}"
        if part == "*":
            lines.append(f"{indent}if isinstance({node}, list):")
            lines.append(f"{indent}    for i{depth}, {child} in enumerate({node}):")
            pointer += f"/{{i{depth}}}"
            indent += "        "
        else:
            if not part.isidentifier():
                raise ValueError(f"field name {part!r} cannot be in a generated path")
            lines.append(f"{indent}if isinstance({node}, dict):")
            lines.append(f"{indent}    {child} = {node}.get({part!r})")
            pointer += f"/{part}"
            indent += "    "
        node = child
    lines.append(f"{indent}if {node} is not None:")
    lines.append(f"{indent}    {target}.append(({tag}, f{pointer!r}, {node}))")
    return lines


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
        here = _Field(
            field_path,
            ann,
            identifier=ann.get("x-identifier"),
            codelist=ann.get("x-codelist"),
            not_before=ann.get("x-notBefore"),
            code_prefix=ann.get("x-codePrefix"),
        )
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
        compiler = StructureCompiler()
        self._structure = compiler.compile_message(model.schema)
        if tuple(compiler.item_specs) != model.item_specs:  # two readings of one annotation
            raise ValueError(f"{model.key}: the structure check and the model disagree on items")
        catalogue = rules if rules is not None else load_catalogue()
        self._rules = {rid: r for rid, r in catalogue.items() if r.applies(model.key)}
        named: dict[str, Any] = {}
        self._block = _Plan()
        _collect(model.schema["items"], (), self._block, named)
        self._block.compile()
        self._items: dict[str, _Plan] = {}
        for array_field, record in _item_records(model.schema).items():
            plan = _Plan()
            _collect(record, (), plan, named)
            plan.compile()
            self._items[array_field] = plan
        self._model_rules = MODEL_RULES.get(model.message_type, [])

    def validate(
        self, message: Any, ctx: ValidationContext, *, body: bytes | None = None
    ) -> StructureResult:
        """All levels on ``message``. ``body``, the bytes it was parsed from, lets a message
        without NUL characters skip looking for them (JSON must escape NUL as ``\\u0000``)."""
        result = self._structure(message)
        if body is None or b"\\u0000" in body:
            for path in _nul_paths(message):
                self._add(result.message_findings, self._finding(ctx, "STR-011", path))
        if has_errors(result.message_findings):
            return result
        checked_blocks: set[str] = set()
        context = None  # a block's items are in a row and share its context
        block_pointer, block_codes = "", ()  # type: tuple[str, Found]
        block_record: Any = None
        for item in result.items:
            if item.context is not context:
                context = item.context
                block_pointer = "/" + item.path.split("/")[1]
                block = self._block.gather(context)
                block_codes = block.codes
                block_record = context
                if block_pointer not in checked_blocks:
                    checked_blocks.add(block_pointer)
                    result.message_findings.extend(
                        self._identifiers(block.identifiers, block_pointer, ctx)
                    )
            if item.value is not None:
                self._check_item(item, ctx, block_pointer, block_codes, block_record)
        return result

    def _check_item(
        self,
        item: ExtractedItem,
        ctx: ValidationContext,
        block_pointer: str,
        block_codes: Found,
        block_record: Any,
    ) -> None:
        """An item's identifiers, codes and business rules; and its block's codes (a
        municipality number), which hold or not on this item's clinical date."""
        value = item.value
        assert value is not None
        found = self._items[item.spec.array_field].gather(value)
        on = self._clinical_date(item, ctx)
        findings = self._identifiers(found.identifiers, item.path, ctx)
        code_findings = self._codes(found.codes, item.path, on, ctx)
        if block_codes:
            code_findings += self._codes(block_codes, block_pointer, on, ctx, block_record)
        if findings and code_findings:
            # A malformed identifier is not looked up in its code list as well.
            malformed = {f.path for f in findings if f.severity == "error"}
            findings += [f for f in code_findings if f.path not in malformed]
        else:
            findings += code_findings
        findings += self._business(found, item, on, ctx)
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

    def _identifiers(self, values: Found, base: str, ctx: ValidationContext) -> list[Finding]:
        # Runs for every identifier of every item: the path and the finding are made only when
        # something is wrong.
        out: list[Finding] = []
        for spec, pointer, raw in values:
            kind = spec.identifier
            value = raw if type(raw) is str else str(raw)
            if kind in PERSON_NUMBER_KINDS:
                check = check_person_number(
                    value, allow_synthetic=ctx.allow_synthetic, today=ctx.today
                )
                if check.problem is not None:
                    rule_id = _PERSON_PROBLEM_RULES[check.problem]
                    self._add(out, self._finding(ctx, rule_id, base + pointer))
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
                            base + pointer,
                            expected=KIND_NAMES[kind],
                            actual=KIND_NAMES[check.kind],
                        ),
                    )
            elif kind == "sctid":
                problem = check_sctid(value)
                if problem is Problem.SCTID_PARTITION:
                    self._add(
                        out, self._finding(ctx, "IDN-011", base + pointer, partition=value[-3:-1])
                    )
                elif problem is not None:
                    self._add(out, self._finding(ctx, "IDN-010", base + pointer))
            elif kind in _SIMPLE_CHECKS:
                checker, rule_id = _SIMPLE_CHECKS[kind]
                if checker(value) is not None:
                    self._add(out, self._finding(ctx, rule_id, base + pointer))
        return out

    def _codes(
        self, values: Found, base: str, on: date, ctx: ValidationContext, record: Any = None
    ) -> list[Finding]:
        out: list[Finding] = []
        for spec, pointer, raw in values:
            codelist_id = spec.codelist
            codelist = ctx.codelists.get(codelist_id)
            code = raw if type(raw) is str else str(raw)
            if spec.code_prefix is not None:
                prefix = record.get(spec.code_prefix) if isinstance(record, dict) else None
                if prefix is None:
                    continue  # the field it qualifies is missing: its own finding
                code = str(prefix) + code
            if codelist is None:
                self._add(out, self._finding(ctx, "KOD-004", base + pointer, codelist=codelist_id))
                continue
            found = codelist.lookup(code, on)
            if found.status == "absent" and "." in code:  # ICD-10 is stored without dots
                found = codelist.lookup(code.replace(".", ""), on)
            if found.status == "member":
                continue
            path = base + pointer
            params = {"code": code, "codelist": codelist_id, "on": on.isoformat()}
            if found.status == "absent":
                self._add(out, self._finding(ctx, "KOD-001", path, found.version, **params))
            elif found.status == "inactive":
                self._add(out, self._finding(ctx, "KOD-002", path, found.version, **params))
            elif found.status == "no_version":
                self._add(out, self._finding(ctx, "KOD-003", path, None, **params))
        return out

    def _business(
        self, found: _Values, item: ExtractedItem, on: date, ctx: ValidationContext
    ) -> list[Finding]:
        value = item.value
        assert value is not None
        out: list[Finding] = []
        past_before = ctx.past_before
        for _spec, pointer, raw in found.times:
            text = raw if type(raw) is str else str(raw)
            if text[:10] < past_before and text[4:5] == "-" and text[7:8] == "-":
                continue  # two days ago or more: not in the future at any offset
            if _in_future(text, ctx.latest, ctx.today):
                self._add(out, self._finding(ctx, "BUS-001", item.path + pointer, value=raw))
        for spec, pointer, raw in found.not_before:
            start = value.get(spec.not_before)
            if start is not None and _instant(str(raw)) < _instant(str(start)):
                self._add(
                    out,
                    self._finding(ctx, "BUS-002", item.path + pointer, value=raw, start=start),
                )
        if item.spec.clinical_time_field and on < ctx.earliest_clinical:
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
        for group, pointer, person in found.persons:
            if not isinstance(person, dict):
                continue
            for name in group.fields:
                if person.get(name) is not None:
                    break
            else:  # none of its national-identity fields is given
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


def _nul_paths(node: Any, pointer: str = "") -> list[str]:
    """JSON pointers of the strings in ``node`` that contain U+0000, member names included.
    PostgreSQL's text and jsonb cannot hold it, so a message with one is refused as a whole
    (rejected items are kept too, as sent, for review); Python and SQLite would take it."""
    found: list[str] = []
    if isinstance(node, str):
        if "\x00" in node:
            found.append(pointer)
    elif isinstance(node, dict):
        for key, value in node.items():
            if "\x00" in key:  # shown escaped: the path goes into answers and logs
                key = key.replace("\x00", "\\u0000")
                found.append(f"{pointer}/{key}")
            child = f"{pointer}/{key}"
            found += _nul_paths(value, child)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _nul_paths(value, f"{pointer}/{i}")
    return found


def _instant(value: str) -> datetime:
    """A comparable instant: dates count as midnight UTC, date-times as given."""
    if len(value) == 10:
        return datetime.fromisoformat(value + "T00:00:00+00:00")
    return datetime.fromisoformat(value)


def _in_future(value: str, latest: datetime, today: date) -> bool:
    if len(value) == 10:
        return date.fromisoformat(value) > today
    return datetime.fromisoformat(value) > latest
