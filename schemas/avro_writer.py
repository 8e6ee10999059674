"""A schema-specialised Avro binary writer: Python source generated once per schema, then compiled.

Written by hand because no maintained library does it: fastavro interprets the schema for every
datum (a dictionary lookup per field and type, and for a union of records a full validation of the
value before writing it), which made Avro encoding about a quarter of a gateway's CPU. The
generated writer does the same work with the schema already unrolled into straight-line code:
one function per record type, fields in order, each type's encoding inlined.

It only takes the plain path and is strict about it: a value of another type than its schema
names (a bool for an int, a naive datetime, an int outside 32 bits, a union value that is neither
``None`` nor in tuple notation where it would need resolving) raises :class:`NotPlain`, and the
caller encodes that datum with fastavro instead (:class:`schemas.codec.AvroCodec`), so fastavro
stays the authority on everything unusual and on every error. The tests compare both writers
byte for byte on every example of every model.

Every Avro type is compiled: null, boolean, int, long, float, double, string, bytes, enum, fixed,
array, map, record, named references and unions. A record's fields are all expected in the
datum: one left out (even with a default, which fastavro fills in) goes to fastavro. Of the
logical types only ``timestamp-micros`` and ``timestamp-millis`` convert a datetime here; for the
others the plain value is written as is, and a value to convert (a ``date``, a ``UUID``, a
``Decimal``) is not of the plain type, so it goes to fastavro.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})


class NotPlain(ValueError):
    """The datum needs fastavro's general path (or is invalid, which fastavro will say)."""


def _varint(n: int) -> bytes:
    """Avro's variable-length encoding of an already zig-zagged (non-negative) number."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _micros(value: datetime) -> int:
    """timestamp-micros as fastavro computes it for an aware datetime."""
    if value.tzinfo is None:
        raise NotPlain("naive datetime")
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


class _Timestamps(dict[datetime, bytes]):
    """Encoded timestamps by datetime: a message's events share their recorded time, and often
    their valid times. Bounded: emptied when it reaches ``LIMIT`` entries."""

    LIMIT = 4096

    def __init__(self, millis: bool) -> None:
        super().__init__()
        self.millis = millis

    def __missing__(self, value: datetime) -> bytes:
        if type(value) is not datetime:
            raise NotPlain("timestamp")
        n = _micros(value) // 1000 if self.millis else _micros(value)
        if not _LONG_MIN <= n <= _LONG_MAX:
            raise NotPlain("long")
        if len(self) >= self.LIMIT:
            self.clear()
        encoded = self[value] = _varint((n << 1) ^ (n >> 63))
        return encoded


def _not_plain(what: str) -> None:
    raise NotPlain(what)


_RUNTIME: dict[str, Any] = {
    "_varint": _varint,
    "_not_plain": _not_plain,
    "_pack_double": struct.Struct("<d").pack,
    "_pack_float": struct.Struct("<f").pack,
}


class _Generator:
    """Emits one Python function per record type; values flow through numbered local names."""

    def __init__(self) -> None:
        self.functions: dict[str, list[str]] = {}  # record full name -> source lines
        self.function_names: dict[str, str] = {}
        self.named: dict[str, Any] = {}
        self.constants: dict[str, Any] = {}
        self._locals = 0

    def local(self) -> str:
        self._locals += 1
        return f"v{self._locals}"

    def constant(self, value: Any) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    # -- types ---------------------------------------------------------------------------------

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            if schema not in self.named:
                raise NotImplementedError(f"unknown named type {schema}")
            return self.named[schema]
        return schema

    def type_name(self, schema: Any) -> str:
        schema = self.resolve(schema)
        if isinstance(schema, str):
            return schema
        if isinstance(schema, list):
            return "union"
        return str(schema["type"])

    def record_function(self, schema: dict[str, Any]) -> str:
        name = schema["name"]
        if name in self.function_names:
            return self.function_names[name]
        function = f"_record{len(self.function_names)}"
        self.function_names[name] = function
        self.named[name] = schema
        lines = [
            f"def {function}(o, d):  # {name}",
            "    if type(d) is not dict: _not_plain('record')",
        ]
        self.functions[name] = lines  # reserved before the fields: a record may refer to itself
        body: list[str] = []
        for f in schema["fields"]:
            # A missing field (KeyError) goes to fastavro, which applies its default or refuses
            # it; subscripting is faster than dict.get, and the datums here have every field.
            value = self.local()
            body.append(f"{value} = d[{f['name']!r}]")
            body += self.write(f["type"], value)
        lines += ["    " + line for line in body or ["pass"]]
        return function

    def write(self, schema: Any, value: str) -> list[str]:
        """Lines that append the encoding of local ``value`` (of ``schema``) to bytearray ``o``."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            schema = self.resolve(schema)
        if isinstance(schema, list):
            return self.union(schema, value)
        if isinstance(schema, dict):
            kind = schema["type"]
            logical = schema.get("logicalType")
            if kind == "long" and logical in ("timestamp-micros", "timestamp-millis"):
                return self.timestamp(value, logical)
            if kind in _PRIMITIVES:
                return self.write(kind, value)
            if kind == "record":
                return [f"{self.record_function(schema)}(o, {value})"]
            if kind == "enum":
                self.named[schema["name"]] = schema
                # Each symbol's encoded index, made once.
                symbols = self.constant(
                    {s: _varint(i << 1) for i, s in enumerate(schema["symbols"])}
                )
                return [
                    f"if type({value}) is not str or {value} not in {symbols}:",
                    f"    _not_plain('not a symbol of {schema['name']}')",
                    f"o += {symbols}[{value}]",
                ]
            if kind == "fixed":
                self.named[schema["name"]] = schema
                return [
                    f"if type({value}) is not bytes or len({value}) != {int(schema['size'])}:",
                    f"    _not_plain('fixed {schema['name']}')",
                    f"o += {value}",
                ]
            if kind == "array":
                return self.array(schema["items"], value)
            if kind == "map":
                return self.map(schema["values"], value)
            raise NotImplementedError(f"Avro type {kind}")
        return self.primitive(schema, value)

    def primitive(self, kind: str, value: str) -> list[str]:
        if kind == "null":
            return [f"if {value} is not None:", "    _not_plain('null')"]
        if kind == "boolean":
            return [
                f"if {value} is True: o.append(1)",
                f"elif {value} is False: o.append(0)",
                "else: _not_plain('boolean')",
            ]
        if kind in ("int", "long"):
            low, high = (_INT_MIN, _INT_MAX) if kind == "int" else (_LONG_MIN, _LONG_MAX)
            return [
                f"if type({value}) is not int or not {low} <= {value} <= {high}:",
                f"    _not_plain({kind!r})",
                *self.zigzag(value),
            ]
        if kind in ("float", "double"):
            return [
                f"if type({value}) is not float and type({value}) is not int:",
                f"    _not_plain({kind!r})",
                f"o += _pack_{kind}({value})",
            ]
        if kind == "string":
            encoded = self.local()  # only a str (or subclass, as fastavro takes) has .encode()
            return [f"{encoded} = {value}.encode()", *self.length(encoded)]
        if kind == "bytes":
            return [
                f"if type({value}) is not bytes:",
                "    _not_plain('bytes')",
                *self.length(value),
            ]
        raise NotImplementedError(f"Avro type {kind}")

    def zigzag(self, value: str) -> list[str]:
        """Append a long already known to be in range (one byte for 0..63, the common case)."""
        return [
            f"if 0 <= {value} < 64: o.append({value} << 1)",
            f"else: o += _varint(({value} << 1) ^ ({value} >> 63))",
        ]

    def length(self, data: str) -> list[str]:
        size = self.local()
        return [
            f"{size} = len({data}) << 1",
            f"if {size} < 128: o.append({size})",
            f"else: o += _varint({size})",
            f"o += {data}",
        ]

    def branch_and_string(self, index: int, value: str) -> list[str]:
        """A union's string branch: its index and the string's length (under 64 bytes) as one
        two-byte constant, then the bytes."""
        pairs = self.constant(tuple(bytes((index << 1, n << 1)) for n in range(64)))
        encoded, size = self.local(), self.local()
        return [
            f"{encoded} = {value}.encode()",
            f"{size} = len({encoded})",
            f"if {size} < 64: o += {pairs}[{size}]",
            "else:",
            f"    o.append({index << 1})",
            f"    o += _varint({size} << 1)",
            f"o += {encoded}",
        ]

    def timestamp(self, value: str, logical: str) -> list[str]:
        cache = self.constant(_Timestamps(millis=logical == "timestamp-millis"))
        return [
            f"if type({value}) is int:",
            f"    if not {_LONG_MIN} <= {value} <= {_LONG_MAX}: _not_plain('long')",
            *["    " + line for line in self.zigzag(value)],
            f"else: o += {cache}[{value}]",
        ]

    def array(self, items: Any, value: str) -> list[str]:
        element, count = self.local(), self.local()
        return [
            f"if type({value}) is not list: _not_plain('array')",
            f"{count} = len({value})",
            f"if {count}:",
            f"    if {count} < 64: o.append({count} << 1)",
            f"    else: o += _varint({count} << 1)",
            f"    for {element} in {value}:",
            *["        " + line for line in self.write(items, element)],
            "o.append(0)",
        ]

    def map(self, values: Any, value: str) -> list[str]:
        key, element, count, encoded = self.local(), self.local(), self.local(), self.local()
        return [
            f"if type({value}) is not dict: _not_plain('map')",
            f"{count} = len({value})",
            f"if {count}:",
            f"    if {count} < 64: o.append({count} << 1)",
            f"    else: o += _varint({count} << 1)",
            f"    for {key}, {element} in {value}.items():",
            f"        if type({key}) is not str: _not_plain('map key')",
            f"        {encoded} = {key}.encode()",
            *["        " + line for line in self.length(encoded)],
            *["        " + line for line in self.write(values, element)],
            "o.append(0)",
        ]

    def union(self, branches: list[Any], value: str) -> list[str]:
        """None goes to the null branch; a (name, value) tuple to the named branch (fastavro's
        tuple notation); any other value to the only non-null branch when that is a primitive.
        Anything else fastavro resolves, validating the value against each branch."""
        kinds = [self.type_name(b) for b in branches]
        cases: list[tuple[str, list[str]]] = []
        if "null" in kinds:
            cases.append((f"{value} is None", [f"o.append({kinds.index('null') << 1})"]))
        named = [i for i, k in enumerate(kinds) if k in ("record", "enum", "fixed")]
        if named:
            inner, body = self.local(), []
            for n, index in enumerate(named):
                keyword = "if" if n == 0 else "elif"
                body.append(f"{keyword} {value}[0] == {self.resolve(branches[index])['name']!r}:")
                body.append(f"    o.append({index << 1})")
                body += ["    " + line for line in self.write(branches[index], inner)]
            body.append("else: _not_plain('union branch name')")
            cases.append((f"type({value}) is tuple", [f"{inner} = {value}[1]", *body]))
        others = [i for i, k in enumerate(kinds) if k != "null"]
        if len(others) == 1 and kinds[others[0]] in _PRIMITIVES:
            index = others[0]
            if branches[index] == "string":  # the branch and a short length in one append
                cases.append(("True", self.branch_and_string(index, value)))
            else:
                cases.append(
                    ("True", [f"o.append({index << 1})", *self.write(branches[index], value)])
                )
        lines: list[str] = []
        for n, (condition, body) in enumerate(cases):
            lines.append(f"{'if' if n == 0 else 'elif'} {condition}:")
            lines += ["    " + line for line in body]
        lines += ["else:" if cases else "if True:", "    _not_plain('union needs resolving')"]
        return lines


def compile_writer(parsed_schema: dict[str, Any], header: bytes = b"") -> Callable[[Any], bytes]:
    """``write(datum) -> header + Avro binary`` for a schema parsed by ``fastavro.parse_schema``
    (names are full names there). Raises :class:`NotPlain` for a datum to give to fastavro."""
    generator = _Generator()
    top = generator.write(parsed_schema, "datum")
    source_lines = [line for lines in generator.functions.values() for line in lines]
    source_lines += [
        "def write(datum):",
        f"    o = bytearray({header!r})",
        *["    " + line for line in top],
        "    return bytes(o)",
    ]
    namespace: dict[str, Any] = {**_RUNTIME, **generator.constants}
    code = compile(
        "\n".join(source_lines) + "\n", f"<avro writer {parsed_schema.get('name')}>", "exec"
    )
    exec(code, namespace)  # noqa: S102 - source generated above from a schema, not from input
    write: Callable[[Any], bytes] = namespace["write"]
    write.source = "\n".join(source_lines)  # type: ignore[attr-defined]
    return write


class SplitWriter:
    """A record writer for many datums that share some field values (a message's events share
    their receipt, unit, model and recorded time): :meth:`bind` encodes the shared fields once
    and returns ``write(*varying) -> header + Avro binary``, taking the other fields in schema
    order (:attr:`varying`). A field named in ``encoded`` is passed already encoded, by
    :meth:`encode_field`, for values the caller can reuse (a block's context for its items).

    The bytes are those of the whole-record writer (tests compare them); like it, the bound
    writer raises :class:`NotPlain` (or another error) for a datum it leaves to fastavro.
    """

    def __init__(
        self,
        parsed_schema: dict[str, Any],
        header: bytes,
        *,
        fixed: frozenset[str],
        encoded: frozenset[str],
    ) -> None:
        names = [f["name"] for f in parsed_schema["fields"]]
        unknown = (fixed | encoded) - set(names)
        if unknown or fixed & encoded:
            raise ValueError(f"fields not in the record, or both fixed and encoded: {unknown}")
        generator = _Generator()
        generator.named[parsed_schema["name"]] = parsed_schema
        self.fixed = tuple(n for n in names if n in fixed)
        self.varying = tuple(n for n in names if n not in fixed)
        self.encoded = encoded
        functions: list[list[str]] = []  # the segment and field encoder functions' lines
        segments: list[str] = []  # one function per run of fixed fields: (d) -> their bytes
        parameters: list[str] = []  # the write function's: the segments' bytes, then varying
        body: list[str] = []
        field_encoders: dict[str, str] = {}
        run: list[str] | None = None  # the lines of the current run's segment function
        for f in parsed_schema["fields"]:
            name, value = f["name"], generator.local()
            if name in fixed:
                if run is None:
                    segment = f"_segment{len(segments)}"
                    parameters.insert(len(segments), f"s{len(segments)}")
                    body.append(f"o += s{len(segments)}")
                    segments.append(segment)
                    run = [f"def {segment}(d):", "    o = bytearray()", "    return bytes(o)"]
                    functions.append(run)
                # Before the run's closing return line.
                run[-1:-1] = [
                    f"    {value} = d[{name!r}]",
                    *["    " + line for line in generator.write(f["type"], value)],
                ]
                continue
            run = None
            parameters.append(value)
            if name in encoded:
                encoder = field_encoders[name] = f"_field{len(field_encoders)}"
                functions.append(
                    [
                        f"def {encoder}({value}):",
                        "    o = bytearray()",
                        *["    " + line for line in generator.write(f["type"], value)],
                        "    return bytes(o)",
                    ]
                )
                body.append(f"o += {value}")
            else:
                body += generator.write(f["type"], value)
        source_lines = [line for lines in generator.functions.values() for line in lines]
        for lines in functions:
            source_lines += lines
        source_lines += [
            f"def write({', '.join(parameters)}):",
            f"    o = bytearray({header!r})",
            *["    " + line for line in body],
            "    return bytes(o)",
        ]
        namespace: dict[str, Any] = {**_RUNTIME, **generator.constants}
        code = compile(
            "\n".join(source_lines) + "\n",
            f"<avro split writer {parsed_schema.get('name')}>",
            "exec",
        )
        exec(code, namespace)  # noqa: S102 - source generated above from a schema, not from input
        self.source = "\n".join(source_lines)
        self._write: Callable[..., bytes] = namespace["write"]
        self._segments: list[Callable[[dict[str, Any]], bytes]] = [
            namespace[function] for function in segments
        ]
        self._encoders: dict[str, Callable[[Any], bytes]] = {
            name: namespace[function] for name, function in field_encoders.items()
        }

    def bind(self, fixed_values: dict[str, Any]) -> Callable[..., bytes]:
        """``write(*varying)`` with the fixed fields' bytes made now, from ``fixed_values``."""
        encoded = [segment(fixed_values) for segment in self._segments]
        return functools.partial(self._write, *encoded)

    def encode_field(self, name: str, value: Any) -> bytes:
        """The encoding of a field named in ``encoded``, to pass to the bound writer."""
        return self._encoders[name](value)
