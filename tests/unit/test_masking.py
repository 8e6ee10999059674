"""Masking rules for what reviewers see: identifier fields always, personal-number look-alikes
anywhere, lengths kept, pointers reported; and the session's CSRF value."""

from __future__ import annotations

import pytest

from receiver.review_session import csrf_for
from review.masking import (
    MASK,
    item_prefix,
    looks_personal,
    mask,
    mask_text,
    personal_fields,
    resolve,
)
from schemas.catalogue import load_catalogue

AVTALE = ("*", "avtale", "*")


def hst_fields() -> frozenset[tuple[str, ...]]:
    model = load_catalogue().require("HST_Avtale", 1)
    return personal_fields(model)


def test_every_model_marks_its_person_identifiers() -> None:
    for model in load_catalogue():
        names = {path[-1] for path in personal_fields(model)}
        assert names & {"fodselsNr", "dNr"}, model.key
        assert not names & {"orgNr", "kommuneNr", "hprNr"}, model.key


def test_identifier_fields_are_masked_whatever_their_value() -> None:
    item = {"person": {"fodselsNr": "123", "dNr": 65086210015, "dufNr": None}}
    masked = mask(item, hst_fields(), AVTALE)
    assert masked.value == {"person": {"fodselsNr": MASK * 3, "dNr": MASK * 11, "dufNr": None}}
    assert masked.masked_paths == ("/person/fodselsNr", "/person/dNr")


def test_personal_numbers_in_other_fields_are_masked() -> None:
    item = {"journalId": "15031245610", "avtaleId": 150312456101, "merknad": "pas. 150312 45610"}
    masked = mask(item, hst_fields(), AVTALE)
    assert masked.value["journalId"] == MASK * 11
    assert masked.value["avtaleId"] == MASK * 12
    assert masked.value["merknad"] == "pas. " + MASK * 12
    assert masked.masked_paths == ("/journalId", "/avtaleId")


@pytest.mark.parametrize(
    "value",
    ["974152533", "2024-05-10", "2024-05-10T09:30:00+02:00", "0301", 1, True, "P-000231", 3.5],
)
def test_what_is_not_personal_stays_readable(value: object) -> None:
    assert not looks_personal(value)
    assert mask({"x": value}, hst_fields(), AVTALE).value == {"x": value}


def test_text_keeps_everything_but_the_number() -> None:
    assert mask_text("Fødselsnummer 15031245610 er ugyldig") == (
        f"Fødselsnummer {MASK * 11} er ugyldig"
    )
    assert mask_text("orgnr 974152533, 123456789012345") == "orgnr 974152533, 123456789012345"


def test_pointers_and_prefixes() -> None:
    assert item_prefix("/0/avtale/3") == AVTALE
    doc = {"a/b": {"c~d": [10, 20]}}
    assert resolve(doc, "/a~1b/c~0d/1") == 20
    assert resolve(doc, "") == doc
    for missing in ("/nope", "/a~1b/c~0d/2", "/a~1b/c~0d/x", "no-slash"):
        with pytest.raises(KeyError):
            resolve(doc, missing)
    masked = mask({"a/b": "15031245610"}, frozenset(), ())
    assert masked.masked_paths == ("/a~1b",)


def test_csrf_value_is_tied_to_the_token() -> None:
    assert csrf_for("token-a") == csrf_for("token-a")
    assert csrf_for("token-a") != csrf_for("token-b")
    assert len(csrf_for("token-a")) == 32
