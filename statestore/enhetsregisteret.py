"""The Central Coordinating Register for Legal Entities' (Enhetsregisteret, Brønnøysund) public bulk
format, read into the directory of reporting units (:mod:`statestore.units`).

The bulk downloads (``enheter_alle.json.gz``, ``underenheter_alle.json.gz`` from
data.brreg.no) are one JSON array of units, each as the register's open API answers it:
``organisasjonsnummer``, ``navn``, ``organisasjonsform`` and ``naeringskode1`` (``{kode,
beskrivelse}``), the address (``forretningsadresse`` of a main unit, ``beliggenhetsadresse`` of a
sub-unit: the site) with ``kommunenummer``, and ``overordnetEnhet`` (a sub-unit's main unit, or a
main unit's parent in the public sector). A health trust's or a municipality's reporting sites
are its sub-units.

The array is read entry by entry with :meth:`json.JSONDecoder.raw_decode`, so an entry in the
wrong shape is refused naming its line and field exactly; nothing of the file is stored then.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from validators.identifiers import check_orgnr

UnitKind = Literal["enhet", "underenhet"]


class UnitFileError(ValueError):
    """A bulk file in another shape: the message names the line and the field."""


@dataclass(frozen=True, slots=True)
class Unit:
    orgnr: str
    name: str
    kind: UnitKind
    parent_orgnr: str | None
    kommune_nr: str | None
    industry_code: str | None  # NACE (SN2007), e.g. 86.211 Allmenn legetjeneste
    industry_text: str | None
    organisation_form: str | None


def read_file(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def parse_units(text: str, *, industry_prefixes: tuple[str, ...] = ()) -> list[Unit]:
    """The units of a bulk file, main units and sub-units alike (told apart by their address);
    with ``industry_prefixes`` only those whose industry code starts with one of them."""
    decoder = json.JSONDecoder()
    at = _skip(text, 0)
    if text[at : at + 1] != "[":
        raise UnitFileError(f"line {_line(text, at)}: a bulk file is one JSON array of units")
    at = _skip(text, at + 1)
    units: list[Unit] = []
    index = 0
    while text[at : at + 1] != "]":
        if index:
            if text[at : at + 1] != ",":
                raise UnitFileError(f"line {_line(text, at)}: expected ',' between units")
            at = _skip(text, at + 1)
        start = at
        try:
            entry, at = decoder.raw_decode(text, at)
        except ValueError as exc:
            raise UnitFileError(f"line {_line(text, start)}: not JSON ({exc.args[0]})") from None
        unit = _unit(entry, index, _line(text, start))
        if not industry_prefixes or (unit.industry_code or "").startswith(industry_prefixes):
            units.append(unit)
        index += 1
        at = _skip(text, at)
        if at >= len(text):
            raise UnitFileError(f"line {_line(text, at)}: the array is not closed")
    return units


def _unit(entry: Any, index: int, line: int) -> Unit:
    def bad(field: str, problem: str) -> UnitFileError:
        return UnitFileError(f"line {line}: unit {index}: field {field} {problem}")

    if not isinstance(entry, dict):
        raise bad("", "is not an object")
    orgnr = entry.get("organisasjonsnummer")
    if not isinstance(orgnr, str) or check_orgnr(orgnr) is not None:
        raise bad("organisasjonsnummer", "is not an organisation number (9 digits, mod 11)")
    name = entry.get("navn")
    if not isinstance(name, str) or not name.strip():
        raise bad("navn", "is missing or empty")
    site = entry.get("beliggenhetsadresse")
    kind: UnitKind = "underenhet" if "beliggenhetsadresse" in entry else "enhet"
    address = site if kind == "underenhet" else entry.get("forretningsadresse")
    kommune = None
    if address is not None:
        if not isinstance(address, dict):
            raise bad(
                "forretningsadresse" if kind == "enhet" else "beliggenhetsadresse",
                "is not an object",
            )
        kommune = address.get("kommunenummer")
        if kommune is not None and not (
            isinstance(kommune, str) and len(kommune) == 4 and kommune.isdigit()
        ):
            raise bad("kommunenummer", "is not four digits")
    parent = entry.get("overordnetEnhet")
    if parent is not None and (not isinstance(parent, str) or check_orgnr(parent) is not None):
        raise bad("overordnetEnhet", "is not an organisation number")
    industry = entry.get("naeringskode1")
    form = entry.get("organisasjonsform")
    return Unit(
        orgnr=orgnr,
        name=name.strip()[:300],
        kind=kind,
        parent_orgnr=parent,
        kommune_nr=kommune,
        industry_code=_text(industry, "kode"),
        industry_text=_text(industry, "beskrivelse"),
        organisation_form=_text(form, "kode"),
    )


def _text(node: Any, key: str) -> str | None:
    value = node.get(key) if isinstance(node, dict) else None
    return value[:300] if isinstance(value, str) and value else None


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _line(text: str, at: int) -> int:
    return text.count("\n", 0, at) + 1
