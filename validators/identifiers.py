"""Identifier checks: pure functions from a value to what is wrong with it (``None`` when fine).

Norwegian person numbers are checked by our own code, because python-stdnum rejects numbers the
register must accept: synthetic test persons (month + 80), FH-numbers and the first-control-digit
rule that applies to numbers issued from 2032. python-stdnum is used where it is right:
organisation numbers (mod 11) and SNOMED CT's Verhoeff check digit.

Person numbers (11 digits, DDMMYY + individual number + two control digits):

* fødselsnummer: day 01–31, month 01–12;
* D-number: day + 40;  H-number: month + 40;
* synthetic test persons from the national test data service (Tenor): month + 80 — accepted only
  where settings say the deployment is a test environment;
* FH-number: first digit 8 or 9, no date; the same control digits;
* control digits: weights 3,7,6,1,8,9,4,5,2 and 5,4,3,2,7,6,5,4,3,2, modulo 11. From 2032 the
  first control digit may come from a remainder of 0, 1, 2 or 3 (four valid values) and the
  individual number no longer tells the century.

DUF number: 12 digits, year (4) + serial (6) + two control digits: the weighted sum (4,6,3,2,7,5,
4,6,3,2) of serial then year, modulo 11, written as two digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from operator import mul

from stdnum import verhoeff
from stdnum.no import orgnr as stdnum_orgnr

_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_DUF_WEIGHTS = (4, 6, 3, 2, 7, 5, 4, 6, 3, 2)


class PersonIdKind(StrEnum):
    FNR = "fnr"
    DNR = "dnr"
    HNR = "hnr"
    FHNR = "fhnr"
    SYNTHETIC = "synthetic"


class Problem(StrEnum):
    """What can be wrong with an identifier; each maps to one rule in the catalogue."""

    FORM = "form"  # wrong length or not digits
    CONTROL_DIGITS = "control_digits"
    BIRTH_DATE = "birth_date"  # no such date
    FUTURE_BIRTH_DATE = "future_birth_date"
    SYNTHETIC_IN_PRODUCTION = "synthetic_in_production"
    SCTID_PARTITION = "sctid_partition"


@dataclass(frozen=True, slots=True)
class PersonIdCheck:
    kind: PersonIdKind | None
    problem: Problem | None


_FORM = PersonIdCheck(None, Problem.FORM)


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    """The weighted digit sum of a string of ASCII digits, as many as there are weights. Its
    bytes are the digits' codes (48 + digit), so the sum over the bytes less 48 × the weights'
    sum needs no int() per digit: half the time of ``sum(map(mul, map(int, digits), weights))``."""
    total: int = sum(map(mul, digits.encode(), weights))
    return total - _ZERO_SUMS[weights]


_ZERO_SUMS: dict[tuple[int, ...], int] = {w: 48 * sum(w) for w in (_W1, _W2, _DUF_WEIGHTS)}


def _is_digits(value: str, length: int) -> bool:
    """Exactly ``length`` ASCII digits (``str.isdigit`` alone accepts other scripts' digits)."""
    return len(value) == length and value.isascii() and value.isdigit()


def control_digits_ok(number: str) -> tuple[bool, bool]:
    """(valid today, valid only under the 2032 rule) for an 11-digit person number."""
    first_remainder = (_weighted(number[:9], _W1) + int(number[9])) % 11
    second_ok = (_weighted(number[:10], _W2) + int(number[10])) % 11 == 0
    classic = first_remainder == 0 and second_ok
    return classic, (not classic) and second_ok and first_remainder in (1, 2, 3)


def _century_candidates(individual: int, yy: int, classic: bool) -> list[int]:
    """Possible birth years: from the individual number where it still tells the century."""
    if not classic:
        return [1900 + yy, 2000 + yy]
    if individual <= 499:
        return [1900 + yy]
    if individual <= 749 and yy >= 54:
        return [1800 + yy]
    if individual >= 900 and yy >= 40:
        return [1900 + yy]
    if yy <= 39:
        return [2000 + yy]
    return [1900 + yy, 2000 + yy]


def check_person_number(value: str, *, allow_synthetic: bool, today: date) -> PersonIdCheck:
    if not _is_digits(value, 11):
        return _FORM
    classic, rule_2032 = control_digits_ok(value)
    if not (classic or rule_2032):
        return PersonIdCheck(None, Problem.CONTROL_DIGITS)
    if value[0] in "89":
        return PersonIdCheck(PersonIdKind.FHNR, None)
    day, month, yy = int(value[0:2]), int(value[2:4]), int(value[4:6])
    kind = PersonIdKind.FNR
    if day > 40:
        kind, day = PersonIdKind.DNR, day - 40
    if month > 80:
        kind, month = PersonIdKind.SYNTHETIC, month - 80
    elif month > 40:
        kind, month = PersonIdKind.HNR, month - 40
    years = _century_candidates(int(value[6:9]), yy, classic)
    births = [b for b in (_date_or_none(y, month, day) for y in years) if b is not None]
    if not births:
        return PersonIdCheck(kind, Problem.BIRTH_DATE)
    if all(b > today for b in births):
        return PersonIdCheck(kind, Problem.FUTURE_BIRTH_DATE)
    if kind is PersonIdKind.SYNTHETIC and not allow_synthetic:
        return PersonIdCheck(kind, Problem.SYNTHETIC_IN_PRODUCTION)
    return PersonIdCheck(kind, None)


def _date_or_none(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def check_duf(value: str) -> Problem | None:
    if not _is_digits(value, 12):
        return Problem.FORM
    reordered = value[4:10] + value[0:4]
    expected = _weighted(reordered, _DUF_WEIGHTS) % 11
    return None if value[10:] == f"{expected:02d}" else Problem.CONTROL_DIGITS


def check_orgnr(value: str) -> Problem | None:
    if len(value) != 9 or not value.isdigit():
        return Problem.FORM
    return None if stdnum_orgnr.is_valid(value) else Problem.CONTROL_DIGITS


def check_hpr(value: str) -> Problem | None:
    """HPR numbers have no published check digit: 1–9 digits, not zero."""
    ok = value.isdigit() and 1 <= len(value) <= 9 and int(value) > 0
    return None if ok else Problem.FORM


def check_resh(value: str) -> Problem | None:
    """RESH ids (the health register's unit ids) are positive integers without a check digit."""
    ok = value.isdigit() and 1 <= len(value) <= 9 and int(value) > 0
    return None if ok else Problem.FORM


def check_sctid(value: str) -> Problem | None:
    """A SNOMED CT concept id: 6–18 digits, Verhoeff check digit, a concept partition (00 in the
    international edition, 10 in an extension, whose 7-digit namespace precedes it)."""
    if not (value.isdigit() and 6 <= len(value) <= 18) or value[0] == "0":
        return Problem.FORM
    if not verhoeff.is_valid(value):
        return Problem.CONTROL_DIGITS
    partition = value[-3:-1]
    if partition == "00" or (partition == "10" and len(value) >= 11):
        return None
    return Problem.SCTID_PARTITION
