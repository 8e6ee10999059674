"""Identifier checks, including what python-stdnum would get wrong for the register."""

from __future__ import annotations

import contextlib
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.no import fodselsnummer as stdnum_fnr

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

TODAY = date(2026, 1, 15)


def _controls(first9: str, *, first_remainder: int = 0) -> str | None:
    """First nine digits + control digits; ``first_remainder`` > 0 makes a 2032-style number."""
    w1, w2 = (3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    s1 = sum(int(d) * w for d, w in zip(first9, w1, strict=True))
    k1 = (first_remainder - s1) % 11
    if k1 == 10:
        return None
    ten = first9 + str(k1)
    k2 = (11 - sum(int(d) * w for d, w in zip(ten, w2, strict=True)) % 11) % 11
    return None if k2 == 10 else ten + str(k2)


def _number(prefix: str, *, first_remainder: int = 0) -> str:
    for individual in range(100, 1000):
        number = _controls(f"{prefix}{individual:03d}", first_remainder=first_remainder)
        if number:
            return number
    raise AssertionError("no number")


def check(value: str, allow_synthetic: bool = False) -> tuple[PersonIdKind | None, Problem | None]:
    result = check_person_number(value, allow_synthetic=allow_synthetic, today=TODAY)
    return result.kind, result.problem


def test_kinds_of_person_numbers() -> None:
    assert check("15031245610") == (PersonIdKind.FNR, None)
    assert check(_number("550312")) == (PersonIdKind.DNR, None)  # day + 40
    assert check(_number("154312")) == (PersonIdKind.HNR, None)  # month + 40
    assert check("81212121223") == (PersonIdKind.FHNR, None)
    assert check("94545456561") == (PersonIdKind.FHNR, None)


def test_synthetic_test_persons_only_outside_production() -> None:
    synthetic = _number("158312")  # month + 80
    assert check(synthetic, allow_synthetic=True) == (PersonIdKind.SYNTHETIC, None)
    assert check(synthetic) == (PersonIdKind.SYNTHETIC, Problem.SYNTHETIC_IN_PRODUCTION)
    assert not stdnum_fnr.is_valid(synthetic)  # why we do not use python-stdnum here


def test_the_2032_first_control_digit() -> None:
    for remainder in (1, 2, 3):
        new_style = _number("150312", first_remainder=remainder)
        assert check(new_style) == (PersonIdKind.FNR, None)
    assert not stdnum_fnr.is_valid(_number("150312", first_remainder=1))
    assert check(_number("150312", first_remainder=4))[1] is Problem.CONTROL_DIGITS


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("15031245611", Problem.CONTROL_DIGITS),
        ("1503124561", Problem.FORM),
        ("1503124561a", Problem.FORM),
        # Digits of another script are digits to str.isdigit, not to the register.
        ("150312456\u0661\u0660", Problem.FORM),
        (_number("310288"), Problem.BIRTH_DATE),  # 31 February
        (_number("010135"), None),  # individual 100-499: born 1935
    ],
)
def test_person_number_problems(value: str, problem: Problem | None) -> None:
    assert check(value)[1] is problem


def test_birth_dates_in_the_future() -> None:
    future = _controls("010135500")  # individual 500-999 with year 35: 2035
    assert future is not None
    assert check(future)[1] is Problem.FUTURE_BIRTH_DATE
    today_born = _controls("150126500")  # born today (2026-01-15): not the future
    assert today_born is not None
    assert check(today_born)[1] is None


def _spelled_out(value: str, allow_synthetic: bool) -> tuple[PersonIdKind | None, Problem | None]:
    """The person number rules of the module docstring, written plainly: the reference the
    checker (which works on the digits' bytes and returns shared answers) must agree with."""
    if len(value) != 11 or not all(c in "0123456789" for c in value):
        return None, Problem.FORM
    d = [int(c) for c in value]
    w1, w2 = (3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    first = (sum(x * w for x, w in zip(d[:9], w1, strict=True)) + d[9]) % 11
    second_ok = (sum(x * w for x, w in zip(d[:10], w2, strict=True)) + d[10]) % 11 == 0
    classic = first == 0 and second_ok
    if not (classic or (second_ok and first in (1, 2, 3))):
        return None, Problem.CONTROL_DIGITS
    if d[0] >= 8:
        return PersonIdKind.FHNR, None
    day, month, yy, individual = int(value[:2]), int(value[2:4]), int(value[4:6]), int(value[6:9])
    kind = PersonIdKind.FNR
    if day > 40:
        kind, day = PersonIdKind.DNR, day - 40
    if month > 80:
        kind, month = PersonIdKind.SYNTHETIC, month - 80
    elif month > 40:
        kind, month = PersonIdKind.HNR, month - 40
    if not classic:
        years = [1900 + yy, 2000 + yy]
    elif individual <= 499:
        years = [1900 + yy]
    elif individual <= 749 and yy >= 54:
        years = [1800 + yy]
    elif individual >= 900 and yy >= 40:
        years = [1900 + yy]
    elif yy <= 39:
        years = [2000 + yy]
    else:
        years = [1900 + yy, 2000 + yy]
    births = []
    for year in years:
        with contextlib.suppress(ValueError):
            births.append(date(year, month, day))
    if not births:
        return kind, Problem.BIRTH_DATE
    if all(b > TODAY for b in births):
        return kind, Problem.FUTURE_BIRTH_DATE
    if kind is PersonIdKind.SYNTHETIC and not allow_synthetic:
        return kind, Problem.SYNTHETIC_IN_PRODUCTION
    return kind, None


_DIGITS = st.text(alphabet="0123456789", min_size=9, max_size=9)


@settings(max_examples=3000, deadline=None)
@given(
    number=st.one_of(
        _DIGITS.map(_controls).filter(bool),  # valid control digits: the date rules run
        _DIGITS.map(lambda first9: _controls(first9, first_remainder=2)).filter(bool),
        st.text(alphabet="0123456789", min_size=11, max_size=11),
        st.text(min_size=0, max_size=12),
    ),
    allow_synthetic=st.booleans(),
)
def test_the_checker_agrees_with_the_rules_spelled_out(number: str, allow_synthetic: bool) -> None:
    assert check(number, allow_synthetic) == _spelled_out(number, allow_synthetic)


def test_duf_numbers() -> None:
    for valid in ("200112345609", "201017238203", "200816832910"):
        assert check_duf(valid) is None
    assert check_duf("200112345608") is Problem.CONTROL_DIGITS
    assert check_duf("20011234560") is Problem.FORM
    assert check_duf("2001123456\u0660\u0669") is Problem.FORM


def test_organisation_hpr_resh_numbers() -> None:
    assert check_orgnr("974152533") is None
    assert check_orgnr("974152534") is Problem.CONTROL_DIGITS
    assert check_orgnr("97415253") is Problem.FORM
    assert check_hpr("9144889") is None
    assert check_hpr("0000000") is Problem.FORM
    assert check_resh("4208123") is None
    assert check_resh("0") is Problem.FORM


def test_snomed_ct_ids() -> None:
    assert check_sctid("80967001") is None  # international concept (partition 00)
    assert check_sctid("51000202101") is None  # Norwegian extension concept (namespace 1000202)
    assert check_sctid("80967002") is Problem.CONTROL_DIGITS
    assert check_sctid("1234567013") is Problem.SCTID_PARTITION  # a description (01)
    assert check_sctid("12345") is Problem.FORM
