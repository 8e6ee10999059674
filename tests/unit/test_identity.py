"""Identity keys and pseudonyms: sealing, key ids and rotation, the keyset file's checks, and
replacing the person identifiers of an item (identity/)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from identity.keys import (
    KeysetError,
    KeysetFile,
    SealedValueError,
    load_keyset,
    new_keyset,
    rotate,
    write_keyset,
)
from identity.pseudonyms import (
    IdentifierField,
    Pseudonymiser,
    _Plan,
    identifier_fields,
    pseudonym_of,
)
from schemas.catalogue import load_catalogue
from tests.integration.helpers import appointment

FNR = "15031245610"


@pytest.fixture
def keyset_path(tmp_path: Path) -> Path:
    path = tmp_path / "identity" / "keyset.json"
    assert write_keyset(path, new_keyset(), exclusive=True)
    return path


def test_a_sealed_value_opens_only_with_its_key_and_its_associated_data() -> None:
    keyset = new_keyset()
    sealed = keyset.seal(FNR.encode(), b"p1-abc")
    assert FNR.encode() not in sealed
    assert keyset.open(sealed, b"p1-abc") == FNR.encode()
    assert keyset.seal(FNR.encode(), b"p1-abc") != sealed  # a fresh nonce each time
    with pytest.raises(SealedValueError):
        keyset.open(sealed, b"p1-other")  # moved next to another pseudonym
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealedValueError):
        keyset.open(tampered, b"p1-abc")
    with pytest.raises(SealedValueError):
        new_keyset().open(sealed, b"p1-abc")  # another keyset's key e1


def test_rotation_seals_under_the_new_key_and_old_values_stay_readable(keyset_path: Path) -> None:
    before = load_keyset(keyset_path)
    old = before.seal(FNR.encode(), b"x")
    assert rotate(keyset_path) == "e2"
    after = load_keyset(keyset_path)
    assert after.primary == "e2"
    assert after.key_id_of(after.seal(b"y", b"x")) == "e2"
    assert after.open(old, b"x") == FNR.encode()
    assert pseudonym_of(after, FNR) == pseudonym_of(before, FNR)  # linkage survives


def test_a_running_process_picks_up_a_rotated_keyset(keyset_path: Path) -> None:
    keys = KeysetFile(keyset_path)
    assert keys.current().primary == "e1"
    rotate(keyset_path)
    time.sleep(KeysetFile.CHECK_SECONDS + 0.1)  # the file is looked at again each second
    assert keys.current().primary == "e2"


def test_the_keyset_file_is_checked(tmp_path: Path, keyset_path: Path) -> None:
    with pytest.raises(KeysetError, match="no identity keyset"):
        load_keyset(tmp_path / "missing.json")
    os.chmod(keyset_path, 0o644)
    with pytest.raises(KeysetError, match="readable by others"):
        load_keyset(keyset_path)
    os.chmod(keyset_path, 0o600)
    data = json.loads(keyset_path.read_text())
    data["primary"] = "e9"
    keyset_path.write_text(json.dumps(data))
    with pytest.raises(KeysetError, match="primary key 'e9'"):
        load_keyset(keyset_path)
    keyset_path.write_text("{not json")
    with pytest.raises(KeysetError, match="not an identity keyset"):
        load_keyset(keyset_path)
    # exclusive creation never replaces a keyset that is there
    assert not write_keyset(keyset_path, new_keyset(), exclusive=True)
    assert keyset_path.read_text() == "{not json"


def test_every_model_names_its_person_identifier_fields() -> None:
    found = {
        model.key: {
            array: sorted(".".join(f.path) for f in fields)
            for array, fields in identifier_fields(model).items()
        }
        for model in load_catalogue()
    }
    assert found["HST_Avtale/1"] == {
        "avtale": ["person.dNr", "person.dufNr", "person.fodselsNr"],
        "slettAvtale": [],  # a deletion names the object, not the person
    }
    assert found["NPR_Kontakt/1"]["kontakt"] == [
        "person.dNr",
        "person.fhNr",
        "person.fodselsNr",
        "person.hNr",
    ]
    assert found["TANN_Behandling/1"]["behandling"] == ["pasient.dNr", "pasient.fodselsNr"]
    assert all(any(per_model.values()) for per_model in found.values())


def test_an_items_identifiers_become_pseudonyms_and_the_item_is_left_as_it_was(
    keyset_path: Path,
) -> None:
    catalogue = load_catalogue()
    model = catalogue.require("HST_Avtale", 1)
    pseudonyms = Pseudonymiser(KeysetFile(keyset_path), list(catalogue))
    item = appointment("a-1")[0]["avtale"][0]
    item["person"]["dNr"] = None
    replaced, sealed = pseudonyms.item(model, "avtale", item)
    assert item["person"]["fodselsNr"] == FNR  # the caller's value is not changed
    pseudonym = replaced["person"]["fodselsNr"]
    assert pseudonym.startswith("p1-")
    assert len(pseudonym) == 3 + 32
    assert replaced["person"]["dNr"] is None
    assert replaced["avtaleId"] == "a-1"
    assert [(e.pseudonym, e.kind) for e in sealed] == [(pseudonym, "fnr")]
    assert pseudonyms.reveal(sealed[0].sealed, pseudonym) == FNR
    # the same person in another item, message type or unit gets the same pseudonym
    other = catalogue.require("NPR_Kontakt", 1)
    again, _ = pseudonyms.item(other, "kontakt", {"person": {"fodselsNr": FNR}})
    assert again["person"]["fodselsNr"] == pseudonym


def test_the_pseudonym_mac_is_hmac_sha256() -> None:
    keyset = new_keyset()
    for data in (b"", b"person-identifier\x1f" + FNR.encode(), os.urandom(200)):
        assert keyset.mac(data) == hmac.digest(keyset.pseudonym_key, data, hashlib.sha256)


def test_identifiers_under_arrays_and_in_several_records_are_all_replaced(
    keyset_path: Path,
) -> None:
    pseudonyms = Pseudonymiser(KeysetFile(keyset_path), [])
    plan = _Plan.of(
        (
            IdentifierField(("person", "fodselsNr"), "fnr"),
            IdentifierField(("mor", "fodselsNr"), "fnr"),
            IdentifierField(("parorende", "[]", "dNr"), "dnr"),
        )
    )
    value: dict[str, Any] = {
        "person": {"fodselsNr": FNR},
        "mor": {"fodselsNr": "01010112345"},
        "parorende": [{"dNr": "41010112345"}, {"dNr": None}, "not a record"],
    }
    replaced, sealed = pseudonyms._replace(plan, value)
    keyset = KeysetFile(keyset_path).current()
    assert replaced["person"]["fodselsNr"] == pseudonym_of(keyset, FNR)
    assert replaced["mor"]["fodselsNr"] == pseudonym_of(keyset, "01010112345")
    assert replaced["parorende"][0]["dNr"] == pseudonym_of(keyset, "41010112345")
    assert replaced["parorende"][1:] == [{"dNr": None}, "not a record"]
    assert value["parorende"][0]["dNr"] == "41010112345"  # the caller's value is not changed
    assert value["mor"]["fodselsNr"] == "01010112345"
    assert sorted(e.kind for e in sealed) == ["dnr", "fnr", "fnr"]
    # pseudonyms already are left alone: a second pass changes nothing and seals nothing
    assert pseudonyms._replace(plan, replaced) == (replaced, [])
