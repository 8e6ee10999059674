"""Structure level: check a message against its annotated Avro schema and split it into items.

Written by hand because no library does what is needed here: Avro validators (fastavro's
``validate``) answer yes/no without JSON paths, and JSON Schema validators know nothing of our
annotations or of which arrays hold reportable items. The schema is compiled once into nested
closures, so checking an item does no schema interpretation.

Annotations read from the ``.avsc`` (Avro ignores attributes it does not know):

``x-digits: N``         a string of exactly N ASCII digits; a JSON integer is accepted and
                        zero-padded
                        (FHI's SLASH example sends identifiers as numbers)
``x-pattern``           ECMA-262 regular expression the string must match (as JSON Schema's
                        ``pattern``; :mod:`schemas.formats`)
``x-minLength``/``x-maxLength``, ``x-minimum``/``x-maximum``
``x-format: date-time`` ISO 8601 timestamp with an offset
``x-format: date``      ISO 8601 calendar date (YYYY-MM-DD)
``x-item``              on an array field: its elements are reportable items
                        (:class:`schemas.items.ItemSpec`)

Errors inside an item reject that item only; errors outside every item reject the message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from schemas.formats import DATE_PATTERN, DATE_TIME_PATTERN, digits_pattern, python_pattern
from schemas.items import ItemSpec, field_value, full_name
from validators.findings import Finding
from validators.rules import rule

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_JSON_TYPE_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


class _Invalid:
    """Marks a value that failed a check; its findings say why."""


INVALID: Any = _Invalid()


@dataclass(slots=True)
class ExtractedItem:
    spec: ItemSpec
    path: str
    raw: Any
    value: dict[str, Any] | None  # normalised record, None when the item has errors
    findings: list[Finding]
    context: dict[str, Any] = field(default_factory=dict)
    index: int = 0

    @property
    def object_id(self) -> str | None:
        source = self.value if self.value is not None else self.raw
        if isinstance(source, dict):
            oid = field_value(source, self.spec.object_id_field)
            if isinstance(oid, str | int) and not isinstance(oid, bool):
                return str(oid)
        return None


@dataclass(slots=True)
class StructureResult:
    message_findings: list[Finding]
    items: list[ExtractedItem]


class _Context:
    __slots__ = ("findings", "items")

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.items: list[ExtractedItem] = []


Node = Callable[[Any, str, _Context], Any]


def _type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _wrong_type(expected: str) -> Node:
    finding_rule = rule("STR-002")

    def report(value: Any, path: str, ctx: _Context) -> Any:
        ctx.findings.append(finding_rule.finding(path, expected=expected, actual=_type_name(value)))
        return INVALID

    return report


class StructureCompiler:
    """Compiles one message schema; keeps the named types it has seen, as Avro resolves names."""

    def __init__(self) -> None:
        self._named: dict[str, Node] = {}
        self.item_specs: list[ItemSpec] = []

    def compile_message(self, schema: Any) -> Callable[[Any], StructureResult]:
        root = self._compile(schema, namespace="", annotations={})

        def validate(message: Any) -> StructureResult:
            ctx = _Context()
            root(message, "", ctx)  # items numbered as found, in document order
            return StructureResult(ctx.findings, ctx.items)

        return validate

    # -- types -------------------------------------------------------------------------------

    def _compile(self, schema: Any, namespace: str, annotations: dict[str, Any]) -> Node:
        if isinstance(schema, str):
            if schema in self._named or f"{namespace}.{schema}" in self._named:
                name = schema if schema in self._named else f"{namespace}.{schema}"
                return self._reference(name)
            return self._primitive(schema, annotations)
        if isinstance(schema, list):
            return self._union(schema, namespace, annotations)
        kind = schema["type"]
        if kind == "record":
            return self._record(schema, namespace)
        if kind == "array":
            return self._array(schema, namespace, annotations)
        if kind == "enum":
            return self._enum(schema, namespace)
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return self._primitive(kind, {**schema, **annotations})
        raise NotImplementedError(f"schema type {kind!r} is not supported by the structure check")

    def _reference(self, name: str) -> Node:
        named = self._named

        def check(value: Any, path: str, ctx: _Context) -> Any:
            return named[name](value, path, ctx)

        return check

    def _primitive(self, kind: str, ann: dict[str, Any]) -> Node:
        if kind == "string":
            return _string_node(ann)
        if kind in ("int", "long"):
            return _integer_node(_INT32 if kind == "int" else _INT64, ann)
        if kind in ("float", "double"):
            return _number_node(ann)
        if kind == "boolean":
            report = _wrong_type("boolean")

            def check_bool(value: Any, path: str, ctx: _Context) -> Any:
                return value if value is True or value is False else report(value, path, ctx)

            return check_bool
        if kind == "null":
            report_null = _wrong_type("null")
            return lambda value, path, ctx: None if value is None else report_null(value, path, ctx)
        raise NotImplementedError(f"primitive {kind!r} is not supported by the structure check")

    def _union(self, branches: list[Any], namespace: str, ann: dict[str, Any]) -> Node:
        others = [b for b in branches if b != "null"]
        if len(others) != 1 or len(branches) > 2:
            raise NotImplementedError("only optional unions ['null', T] are supported")
        inner = self._compile(others[0], namespace, ann)

        def check(value: Any, path: str, ctx: _Context) -> Any:
            return None if value is None else inner(value, path, ctx)

        return check

    def _enum(self, schema: dict[str, Any], namespace: str) -> Node:
        symbols = frozenset(schema["symbols"])
        allowed = ", ".join(schema["symbols"])
        bad_value = rule("STR-006")
        report = _wrong_type("string")

        def check(value: Any, path: str, ctx: _Context) -> Any:
            if not isinstance(value, str):
                return report(value, path, ctx)
            if value not in symbols:
                ctx.findings.append(bad_value.finding(path, value=value, allowed=allowed))
                return INVALID
            return value

        self._named[full_name(schema, namespace)] = check
        return check

    def _array(self, schema: dict[str, Any], namespace: str, ann: dict[str, Any]) -> Node:
        element = self._compile(schema["items"], namespace, {})
        report = _wrong_type("array")
        item_annotation = ann.get("x-item")
        if item_annotation is None:

            def check(value: Any, path: str, ctx: _Context) -> Any:
                if not isinstance(value, list):
                    return report(value, path, ctx)
                out = []
                ok = True
                for i, element_value in enumerate(value):
                    result = element(element_value, f"{path}/{i}", ctx)
                    ok = ok and result is not INVALID
                    out.append(result)
                return out if ok else INVALID

            return check

        items = schema["items"]
        if not (isinstance(items, dict) and items.get("type") == "record"):
            raise NotImplementedError("x-item arrays must hold an inline record")
        spec = ItemSpec.from_annotation(
            ann["x-array-field"], full_name(items, namespace), item_annotation
        )
        self.item_specs.append(spec)

        def check_items(value: Any, path: str, ctx: _Context) -> Any:
            if not isinstance(value, list):
                return report(value, path, ctx)
            outer, items = ctx.findings, ctx.items
            for i, element_value in enumerate(value):
                item_path = f"{path}/{i}"
                findings: list[Finding] = []
                ctx.findings = findings
                result = element(element_value, item_path, ctx)
                if result is INVALID or (findings and _has_error(findings)):
                    result = None
                # Positional, for every item: spec, path, raw, value, findings, context, index.
                items.append(
                    ExtractedItem(spec, item_path, element_value, result, findings, {}, len(items))
                )
            ctx.findings = outer
            return []

        return check_items

    def _record(self, schema: dict[str, Any], namespace: str) -> Node:
        record_name = full_name(schema, namespace)
        own_namespace = record_name.rpartition(".")[0]
        # Register before compiling fields so recursive references resolve.
        compiled: dict[str, Node] = {}
        self._named[record_name] = lambda value, path, ctx: compiled["node"](value, path, ctx)
        fields = []
        for f in schema["fields"]:
            ann = {k: v for k, v in f.items() if k.startswith("x-")}
            if "x-item" in ann:
                ann["x-array-field"] = f["name"]
            node = self._compile(f["type"], own_namespace, ann)
            fields.append(_RecordField(f, ann, node, self._fast_test(f["type"], ann)))
        compiled["node"] = _generate_record_check(record_name, fields)
        return compiled["node"]

    def _fast_test(self, schema: Any, ann: dict[str, Any]) -> _FastTest | None:
        """The happy path of a field's check, to inline: a condition on ``v`` under which the
        field's node would return ``v`` itself with no finding. None where the node must run."""
        if isinstance(schema, list):
            others = [b for b in schema if b != "null"]
            inner = self._fast_test(others[0], ann) if len(others) == 1 else None
            if inner is None:
                return _FastTest("v is None", {})
            return _FastTest(f"v is None or ({inner.condition})", inner.constants)
        if isinstance(schema, dict) and schema.get("type") == "enum":
            return _FastTest("type(v) is str and v in {s}", {"s": frozenset(schema["symbols"])})
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if isinstance(schema, dict):
            ann = {**schema, **ann}
        if kind == "string" and "x-format" not in ann:
            parts, constants = ["type(v) is str"], {}
            if "x-digits" in ann:
                # ^[0-9]{n}$ (schemas.formats): n ASCII digits, without the match's cost.
                parts.append(f"len(v) == {int(ann['x-digits'])} and v.isascii() and v.isdigit()")
            elif "x-pattern" in ann:
                parts.append("{p}(v) is not None")
                constants["p"] = python_pattern(ann["x-pattern"]).search
            if ann.get("x-minLength", 0) > 0:
                parts.append(f"len(v) >= {int(ann['x-minLength'])}")
            if ann.get("x-maxLength") is not None:
                parts.append(f"len(v) <= {int(ann['x-maxLength'])}")
            return _FastTest(" and ".join(parts), constants)
        if kind in ("int", "long"):
            bounds = _INT32 if kind == "int" else _INT64
            low = max(bounds[0], ann.get("x-minimum", bounds[0]))
            high = min(bounds[1], ann.get("x-maximum", bounds[1]))
            return _FastTest(f"type(v) is int and {low!r} <= v <= {high!r}", {})
        if kind in ("float", "double"):
            parts = ["type(v) is float"]
            if ann.get("x-minimum") is not None:
                parts.append(f"v >= {ann['x-minimum']!r}")
            if ann.get("x-maximum") is not None:
                parts.append(f"v <= {ann['x-maximum']!r}")
            return _FastTest(" and ".join(parts), {})
        if kind == "boolean":
            return _FastTest("v is True or v is False", {})
        return None


@dataclass(frozen=True, slots=True)
class _FastTest:
    """A Python condition on ``v``; ``{name}`` placeholders name the constants it needs."""

    condition: str
    constants: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _RecordField:
    schema: dict[str, Any]
    annotations: dict[str, Any]
    node: Node
    fast: _FastTest | None

    @property
    def name(self) -> str:
        return str(self.schema["name"])

    @property
    def nullable(self) -> bool:
        kind = self.schema["type"]
        return kind == "null" or (isinstance(kind, list) and "null" in kind)


_MISSING: Any = object()


def _generate_record_check(record_name: str, fields: list[_RecordField]) -> Node:
    """The check of one record type as one generated function: each field's happy path inline,
    its node (which reports findings) called only when the value is not plainly valid.

    Generated rather than a loop over the fields because this runs for every record of every
    item: the loop cost a tuple unpack, a path string and a node call per field; the findings
    are the nodes' as before (the inline conditions only skip a node that would have returned
    the value unchanged).
    """
    namespace: dict[str, Any] = {
        "INVALID": INVALID,
        "MISSING": _MISSING,
        "report": _wrong_type("object"),
        "missing_rule": rule("STR-001"),
        "null_rule": rule("STR-009"),
        "unknown_rule": rule("STR-005"),
        "known": frozenset(f.name for f in fields),
    }
    has_items = any("x-item" in f.annotations for f in fields)
    lines = [
        "def check(value, path, ctx):",
        "    if not isinstance(value, dict):",
        "        return report(value, path, ctx)",
        "    first_item = len(ctx.items)" if has_items else "",
        "    out = {}",
        "    ok = True",
    ]
    for i, f in enumerate(fields):
        name, is_item = f.name, "x-item" in f.annotations
        where = f"path + {'/' + name!r}"
        namespace[f"node{i}"] = f.node
        store = [] if is_item else [f"out[{name!r}] = r"]
        lines.append(f"    v = value.get({name!r}, MISSING)")
        lines.append("    if v is MISSING:")
        if "default" in f.schema:
            default = f.schema["default"]
            namespace[f"default{i}"] = default
            value = f"list(default{i})" if isinstance(default, list) else f"default{i}"
            lines.append(f"        out[{name!r}] = {value}" if not is_item else "        pass")
        else:
            lines.append(
                f"        ctx.findings.append(missing_rule.finding({where}, field={name!r}))"
            )
            lines.append("        ok = False")
        if f.fast is not None:
            condition = f.fast.condition.format(**{k: f"{k}{i}" for k in f.fast.constants})
            namespace.update({f"{k}{i}": c for k, c in f.fast.constants.items()})
            lines.append(f"    elif {condition}:")
            lines.append(f"        out[{name!r}] = v" if not is_item else "        pass")
        if not f.nullable:
            lines.append("    elif v is None:")
            lines.append(f"        ctx.findings.append(null_rule.finding({where}, field={name!r}))")
            lines.append("        ok = False")
        lines.append("    else:")
        lines.append(f"        r = node{i}(v, {where}, ctx)")
        lines.append("        if r is INVALID:")
        lines.append("            ok = False")
        if store:
            lines.append("        else:")
            lines += ["            " + line for line in store]
    lines += [
        "    if not known.issuperset(value):",
        "        for name in value:",
        "            if name not in known:",
        "                ctx.findings.append(unknown_rule.finding(f'{path}/{name}', field=name))",
    ]
    if has_items:
        lines += ["    for item in ctx.items[first_item:]:", "        item.context = out"]
    lines.append("    return out if ok else INVALID")
    source = "\n".join(line for line in lines if line) + "\n"
    exec(compile(source, f"<structure check {record_name}>", "exec"), namespace)  # noqa: S102 - generated from the schema
    check: Node = namespace["check"]
    return check


_PRIMITIVES = frozenset({"string", "int", "long", "float", "double", "boolean", "null"})


def _has_error(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def _string_node(ann: dict[str, Any]) -> Node:
    digits: int | None = ann.get("x-digits")
    source: str | None = ann.get("x-pattern")
    if digits is not None:
        source = digits_pattern(digits)
    pattern = python_pattern(source) if source is not None else None
    expected = source or ""
    min_length: int = ann.get("x-minLength", 0)
    max_length: int | None = ann.get("x-maxLength")
    is_timestamp = ann.get("x-format") == "date-time"
    is_date = ann.get("x-format") == "date"
    report = _wrong_type("string")
    format_rule, length_rule, time_rule = rule("STR-003"), rule("STR-004"), rule("STR-007")
    date_rule = rule("STR-010")
    timestamp = python_pattern(DATE_TIME_PATTERN)

    def check(value: Any, path: str, ctx: _Context) -> Any:
        if not isinstance(value, str):
            number = _integral(value)
            if digits is not None and number is not None and 0 <= number < 10**digits:
                return str(number).zfill(digits)
            return report(value, path, ctx)
        if pattern is not None and pattern.search(value) is None:
            ctx.findings.append(format_rule.finding(path, expected=expected))
            return INVALID
        if len(value) < min_length or (max_length is not None and len(value) > max_length):
            ctx.findings.append(
                length_rule.finding(
                    path, length=len(value), minimum=min_length, maximum=max_length or "∞"
                )
            )
            return INVALID
        if is_timestamp:
            parsed = None
            if timestamp.search(value) is not None:
                with contextlib.suppress(ValueError):
                    parsed = datetime.fromisoformat(value)
            if parsed is None or parsed.tzinfo is None:
                ctx.findings.append(time_rule.finding(path))
                return INVALID
        elif is_date and not _is_date(value):
            ctx.findings.append(date_rule.finding(path))
            return INVALID
        return value

    return check


def _integral(value: Any) -> int | None:
    """An integer, or a float with no fractional part (JSON's 5.0), as an int; else None."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


_DATE = python_pattern(DATE_PATTERN)


def _is_date(value: str) -> bool:
    if _DATE.search(value) is None:  # fromisoformat also takes week dates (2024-W19-5)
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _integer_node(bounds: tuple[int, int], ann: dict[str, Any]) -> Node:
    low = max(bounds[0], ann.get("x-minimum", bounds[0]))
    high = min(bounds[1], ann.get("x-maximum", bounds[1]))
    report = _wrong_type("integer")
    range_rule = rule("STR-008")

    def check(value: Any, path: str, ctx: _Context) -> Any:
        if type(value) is not int:
            integral = _integral(value)  # 5.0 is the integer 5, as JSON Schema has it
            if integral is None:
                return report(value, path, ctx)
            value = integral
        if not low <= value <= high:
            ctx.findings.append(range_rule.finding(path, value=value, minimum=low, maximum=high))
            return INVALID
        return value

    return check


def _number_node(ann: dict[str, Any]) -> Node:
    low = ann.get("x-minimum")
    high = ann.get("x-maximum")
    report = _wrong_type("number")
    range_rule = rule("STR-008")

    def check(value: Any, path: str, ctx: _Context) -> Any:
        if type(value) not in (int, float):
            return report(value, path, ctx)
        if (low is not None and value < low) or (high is not None and value > high):
            ctx.findings.append(range_rule.finding(path, value=value, minimum=low, maximum=high))
            return INVALID
        return float(value)

    return check
