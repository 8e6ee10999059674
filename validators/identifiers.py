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
from functools import lru_cache
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


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    """The weighted digit sum of a string of ASCII digits, as many as there are weights. Its
    bytes are the digits' codes (48 + digit), so the sum over the bytes less 48 × the weights'
    sum needs no int() per digit: half the time of ``sum(map(mul, map(int, digits), weights))``."""
    return _weighted_bytes(digits.encode(), weights)


def _weighted_bytes(digits: bytes, weights: tuple[int, ...]) -> int:
    """:func:`_weighted` over the first ``len(weights)`` of ``digits``' bytes."""
    total: int = sum(map(mul, digits, weights))  # map stops at the shorter: no slice needed
    return total - _ZERO_SUMS[weights]


_ZERO_SUMS: dict[tuple[int, ...], int] = {w: 48 * sum(w) for w in (_W1, _W2, _DUF_WEIGHTS)}


def _is_digits(value: str, length: int) -> bool:
    """Exactly ``length`` ASCII digits (``str.isdigit`` alone accepts other scripts' digits)."""
    return len(value) == length and value.isascii() and value.isdigit()


def control_digits_ok(number: str) -> tuple[bool, bool]:
    """(valid today, valid only under the 2032 rule) for an 11-digit person number."""
    return _control_digits(number.encode())


def _control_digits(digits: bytes) -> tuple[bool, bool]:
    # The weighted sums of _W1 and _W2 written out: a third less time than two sum(map(...)),
    # and this runs for every person number. The bytes are the digits' codes (48 + digit).
    d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10 = digits
    first_remainder = (
        3 * d0 + 7 * d1 + 6 * d2 + d3 + 8 * d4 + 9 * d5 + 4 * d6 + 5 * d7 + 2 * d8 + d9 - _ZERO_1
    ) % 11
    second_ok = (
        5 * d0
        + 4 * d1
        + 3 * d2
        + 2 * d3
        + 7 * d4
        + 6 * d5
        + 5 * d6
        + 4 * d7
        + 3 * d8
        + 2 * d9
        + d10
        - _ZERO_2
    ) % 11 == 0
    classic = first_remainder == 0 and second_ok
    return classic, (not classic) and second_ok and first_remainder in (1, 2, 3)


_ZERO_1 = 48 * (sum(_W1) + 1)  # what the first sum (with the control digit) adds for "0"s
_ZERO_2 = 48 * (sum(_W2) + 1)


def _century_candidates(individual: int, yy: int, classic: bool) -> tuple[int, ...]:
    """Possible birth years: from the individual number where it still tells the century."""
    if not classic:
        return (1900 + yy, 2000 + yy)
    if individual <= 499:
        return (1900 + yy,)
    if individual <= 749 and yy >= 54:
        return (1800 + yy,)
    if individual >= 900 and yy >= 40:
        return (1900 + yy,)
    if yy <= 39:
        return (2000 + yy,)
    return (1900 + yy, 2000 + yy)


# Every answer a check can give, made once: a person number is checked for every item, and a new
# frozen dataclass per check cost as much as the control digits.
_ANSWERS: dict[tuple[PersonIdKind | None, Problem | None], PersonIdCheck] = {
    (kind, problem): PersonIdCheck(kind, problem)
    for kind in (None, *PersonIdKind)
    for problem in (None, *Problem)
}
_FORM = _ANSWERS[None, Problem.FORM]
_BAD_CONTROL_DIGITS = _ANSWERS[None, Problem.CONTROL_DIGITS]
_TWO_DIGITS = 48 * 11  # the code of "0" times 10 plus the code of "0": "DD" → DD less this
_THREE_DIGITS = 48 * 111


class _KindAnswers:
    """One kind's answers, picked by attribute: an enum's hash is a Python call, too slow to key
    ``_ANSWERS`` by the kind for every check."""

    __slots__ = ("birth_date", "future_birth_date", "ok", "synthetic_in_production")

    def __init__(self, kind: PersonIdKind) -> None:
        self.ok = _ANSWERS[kind, None]
        self.birth_date = _ANSWERS[kind, Problem.BIRTH_DATE]
        self.future_birth_date = _ANSWERS[kind, Problem.FUTURE_BIRTH_DATE]
        self.synthetic_in_production = _ANSWERS[kind, Problem.SYNTHETIC_IN_PRODUCTION]


_FNR, _DNR, _HNR, _SYNTHETIC = (
    _KindAnswers(k)
    for k in (PersonIdKind.FNR, PersonIdKind.DNR, PersonIdKind.HNR, PersonIdKind.SYNTHETIC)
)
_FHNR_OK = _ANSWERS[PersonIdKind.FHNR, None]


def check_person_number(value: str, *, allow_synthetic: bool, today: date) -> PersonIdCheck:
    if not _is_digits(value, 11):
        return _FORM
    digits = value.encode()  # ASCII digits: each byte is 48 + the digit
    classic, rule_2032 = _control_digits(digits)
    if not (classic or rule_2032):
        return _BAD_CONTROL_DIGITS
    if digits[0] >= 56:  # "8" or "9": an FH-number has no date
        return _FHNR_OK
    day = digits[0] * 10 + digits[1] - _TWO_DIGITS
    month = digits[2] * 10 + digits[3] - _TWO_DIGITS
    yy = digits[4] * 10 + digits[5] - _TWO_DIGITS
    individual = digits[6] * 100 + digits[7] * 10 + digits[8] - _THREE_DIGITS
    answers = _FNR
    if day > 40:
        answers, day = _DNR, day - 40
    if month > 80:
        answers, month = _SYNTHETIC, month - 80
    elif month > 40:
        answers, month = _HNR, month - 40
    a_date = born = False  # some candidate year gives a real date; one not after today
    for year in _century_candidates(individual, yy, classic):
        try:
            birth = date(year, month, day)
        except ValueError:
            continue
        a_date = True
        if birth <= today:
            born = True
            break
    if not a_date:
        return answers.birth_date
    if not born:
        return answers.future_birth_date
    if answers is _SYNTHETIC and not allow_synthetic:
        return answers.synthetic_in_production
    return answers.ok


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


@lru_cache(maxsize=8192)  # a message repeats its codes; a SNOMED CT id is not personal data
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
