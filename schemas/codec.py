"""Avro single-object encoding: ``C3 01``, the schema's 8-byte CRC-64-AVRO fingerprint, the body.

Any reader holding the catalogue can find the writer's schema from the fingerprint alone.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.avro_writer import SplitWriter, compile_writer

MAGIC = b"\xc3\x01"


class UnknownSchemaError(ValueError):
    """The bytes are not single-object Avro, or name a schema this process does not know."""


class AvroCodec:
    """Writes with ``schema``; reads values written with it or with one of ``earlier`` (its
    previous forms, resolved to ``schema`` by Avro's rules: a field added since gets its
    default)."""

    def __init__(self, schema: dict[str, Any], earlier: Sequence[dict[str, Any]] = ()) -> None:
        self.schema = schema
        self.parsed = fastavro.parse_schema(schema)
        self.fingerprint = bytes.fromhex(
            fingerprint(to_parsing_canonical_form(self.parsed), "CRC-64-AVRO")
        )
        self.header = MAGIC + self.fingerprint
        self._write = compile_writer(self.parsed, self.header)  # type: ignore[arg-type]
        self._split_writers: dict[tuple[frozenset[str], frozenset[str]], SplitWriter] = {}
        self.earlier: dict[bytes, Any] = {}  # header -> an earlier writer schema, parsed
        for old in earlier:
            parsed = fastavro.parse_schema(old)
            header = MAGIC + bytes.fromhex(
                fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")
            )
            self.earlier[header] = parsed

    def encode(self, datum: Any) -> bytes:
        try:
            return self._write(datum)
        except Exception:  # anything unusual (or invalid) is fastavro's to decide
            return self.encode_with_fastavro(datum)

    def split_writer(self, fixed: frozenset[str], encoded: frozenset[str]) -> SplitWriter:
        """The writer for datums sharing the ``fixed`` fields' values (see
        :class:`~schemas.avro_writer.SplitWriter`), generated once per choice of fields. Where it
        raises, encode the datum with :meth:`encode` instead."""
        key = (fixed, encoded)
        writer = self._split_writers.get(key)
        if writer is None:
            writer = self._split_writers[key] = SplitWriter(
                self.parsed,  # type: ignore[arg-type]
                self.header,
                fixed=fixed,
                encoded=encoded,
            )
        return writer

    def encode_with_fastavro(self, datum: Any) -> bytes:
        """The reference encoding; the generated writer must give the same bytes."""
        out = io.BytesIO()
        out.write(self.header)
        fastavro.schemaless_writer(out, self.parsed, datum)
        return out.getvalue()

    def decode(self, data: bytes) -> Any:
        writer = self.parsed if data[:10] == self.header else self.earlier.get(data[:10])
        if writer is None:
            raise UnknownSchemaError("bytes were written with another schema")
        return fastavro.schemaless_reader(
            io.BytesIO(data[10:]),
            writer,
            self.parsed,
            return_record_name=True,
            return_record_name_override=True,
        )


class CodecRegistry:
    """Finds the codec for single-object bytes by their fingerprint."""

    def __init__(self) -> None:
        self._by_fingerprint: dict[bytes, AvroCodec] = {}

    def register(self, codec: AvroCodec) -> None:
        self._by_fingerprint[codec.fingerprint] = codec
        for header in codec.earlier:
            self._by_fingerprint[header[2:]] = codec

    def decode(self, data: bytes) -> Any:
        if data[:2] != MAGIC:
            raise UnknownSchemaError("not Avro single-object encoding")
        codec = self._by_fingerprint.get(data[2:10])
        if codec is None:
            raise UnknownSchemaError(f"unknown schema fingerprint {data[2:10].hex()}")
        return codec.decode(data)
