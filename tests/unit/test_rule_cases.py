"""Every rule in the catalogue: one item that triggers it and one just on the passing side of its
boundary. A new rule without a case here fails ``test_every_rule_has_a_case``."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from schemas.catalogue import MessageModel, load_catalogue
from tests.unit.test_identifiers import _controls, _number
from validators.codelists import CodeListRegistry, load_samples
from validators.engine import ModelValidator, ValidationContext
from validators.rules import load_catalogue as load_rules

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CONTEXT = ValidationContext(
    now=NOW, allow_synthetic=False, codelists=CodeListRegistry(load_samples())
)
Mutation = Callable[[dict[str, Any]], None]


def _first_item(model_key: str, example: str, array: str) -> tuple[MessageModel, Any]:
    message_type, version = model_key.split("/")
    model = load_catalogue().require(message_type, int(version))
    message = copy.deepcopy(next(e for e in model.examples if e.name == example).message)
    block = message[0]
    items = block[array]
    # Keep one item, so that a finding can only come from the mutation.
    block[array] = [items[0]]
    for field in list(block):
        if isinstance(block[field], list) and field != array:
            block[field] = []
    return model, message


BASES = {
    "avtale": ("HST_Avtale/1", "example", "avtale"),
    "kontakt": ("NPR_Kontakt/1", "kontakter", "kontakt"),
    "behandling": ("TANN_Behandling/1", "behandlinger", "behandling"),
    "start": ("IPLOS_Tjenestehendelse/1", "tjenesteforlop", "tjenesteStart"),
    "endret": ("IPLOS_Tjenestehendelse/1", "tjenesteforlop", "tjenesteutforerEndret"),
}


def _set(path: str, value: Any) -> Mutation:
    def mutate(item: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = item
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


_DELETE = object()
WINDOW = CONTEXT.reporting_window_days
OLD = (NOW - timedelta(days=WINDOW + 1)).isoformat()
NOT_TOO_OLD = (NOW - timedelta(days=WINDOW - 1)).isoformat()

# rule id: (base, trigger, boundary[, context for both])
CASES: dict[str, tuple[Any, ...]] = {
    "STR-001": ("avtale", _set("datoTid", _DELETE), _set("journalId", _DELETE)),
    "STR-002": ("avtale", _set("oppmoteStatus", "1"), _set("oppmoteStatus", 1)),
    "STR-003": (
        "avtale",
        _set("person.fodselsNr", "1503124561"),
        _set("person.fodselsNr", "15031245610"),
    ),
    "STR-004": ("avtale", _set("avtaleId", "x" * 101), _set("avtaleId", "x" * 100)),
    "STR-005": ("avtale", _set("ekstra", 1), _set("journalId", None)),
    "STR-006": ("kontakt", _set("statusNotifikasjon", "X"), _set("statusNotifikasjon", "C")),
    "STR-007": (
        "avtale",
        _set("datoTid", "2024-05-10T09:30:00"),
        _set("datoTid", "2024-05-10T09:30:00Z"),
    ),
    "STR-008": ("avtale", _set("oppmoteStatus", 100), _set("oppmoteStatus", 99)),
    "STR-009": ("avtale", _set("konsultasjonType", None), _set("konsultasjonType", "PQ")),
    "STR-010": (
        "behandling",
        _set("behandlingDato", "2024-02-30"),
        _set("behandlingDato", "2024-02-29"),
    ),
    # A NUL character anywhere refuses the message; the six characters "\u0000" are text.
    "STR-011": ("avtale", _set("avtaleId", "AVT-\x00-1"), _set("avtaleId", "AVT-\\u0000-1")),
    "IDN-001": (
        "avtale",
        _set("person.fodselsNr", "15031245611"),
        _set("person.fodselsNr", "15031245610"),
    ),
    "IDN-002": (
        "avtale",
        _set("person.fodselsNr", _number("310288")),
        _set("person.fodselsNr", _number("290288")),
    ),
    "IDN-003": (
        "avtale",
        _set("person.fodselsNr", _controls("160126500")),
        _set("person.fodselsNr", _controls("150126500")),
    ),
    "IDN-004": (
        "avtale",
        _set("person.fodselsNr", _number("158312")),
        _set("person.fodselsNr", _number("150312")),
    ),
    "IDN-005": ("avtale", _set("person.dNr", "15031245610"), _set("person.dNr", _number("550312"))),
    "IDN-006": (
        "avtale",
        _set("person.dufNr", "200112345608"),
        _set("person.dufNr", "200112345609"),
    ),
    "IDN-007": (
        "endret",
        _set("tjenesteutforer.orgNr", "974152534"),
        _set("tjenesteutforer.orgNr", "974152533"),
    ),
    "IDN-008": (
        "behandling",
        _set("helsepersonell.0.hprNr", "0000000"),
        _set("helsepersonell.0.hprNr", "0000001"),
    ),
    "IDN-009": ("kontakt", _set("reshId", "0"), _set("reshId", "1")),
    "IDN-010": (
        "behandling",
        _set("tiltak.0.sctid", "68071008"),
        _set("tiltak.0.sctid", "68071007"),
    ),
    "IDN-011": (
        "behandling",
        _set("tiltak.0.sctid", "1234567013"),
        _set("tiltak.0.sctid", "68071007"),
    ),
    "KOD-001": ("avtale", _set("konsultasjonType", "ZZ"), _set("konsultasjonType", "PQ")),
    "KOD-002": (
        "kontakt",
        lambda k: k.update(omsorgsniva="8", utDatoTid=None),
        lambda k: k.update(omsorgsniva="8", utDatoTid=None, innDatoTid="2023-12-31T23:00:00+00:00"),
    ),
    "KOD-003": ("start", _set("hendelseDato", "2020-12-31"), _set("hendelseDato", "2021-01-01")),
    "KOD-004": (
        "avtale",
        _set("konsultasjonType", "PQ"),
        _set("konsultasjonType", "PQ"),
        dataclasses.replace(
            CONTEXT,
            codelists=CodeListRegistry(
                c for c in load_samples() if c.id != "hst-konsultasjonstype"
            ),
        ),
    ),
    "BUS-001": (
        "behandling",
        _set("behandlingDato", "2026-01-16"),
        _set("behandlingDato", "2026-01-15"),
    ),
    "BUS-002": (
        "kontakt",
        _set("utDatoTid", "2024-05-10T21:46:00+02:00"),
        _set("utDatoTid", "2024-05-10T21:47:00+02:00"),
    ),
    "BUS-003": ("avtale", _set("datoTid", OLD), _set("datoTid", NOT_TOO_OLD)),
    "BUS-004": (
        "avtale",
        _set("person.fodselsNr", None),
        lambda a: a["person"].update(fodselsNr=None, dNr=_number("550312")),
    ),
    "BUS-101": (
        "kontakt",
        _set(
            "tilstand",
            [{"kode": "S720", "hovedtilstand": True}, {"kode": "I10", "hovedtilstand": True}],
        ),
        _set(
            "tilstand",
            [{"kode": "S720", "hovedtilstand": True}, {"kode": "I10", "hovedtilstand": False}],
        ),
    ),
}
# KOD-004's trigger needs the list missing: its boundary runs with every sample list loaded.
BOUNDARY_CONTEXT = {"KOD-004": CONTEXT, "IDN-004": CONTEXT}


def _rules_fired(base: str, mutate: Mutation, ctx: ValidationContext) -> set[str]:
    model, message = _first_item(*BASES[base])
    array = BASES[base][2]
    mutate(message[0][array][0])
    result = ModelValidator(model).validate(message, ctx)
    fired = {f.rule_id for f in result.message_findings}
    for item in result.items:
        fired |= {f.rule_id for f in item.findings}
    return fired


def test_every_rule_has_a_case() -> None:
    # Integrity rules come from the folds and have their cases in test_fold.py.
    checked = {rid for rid, r in load_rules().items() if r.level != "integrity"}
    assert checked == set(CASES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_triggers(rule_id: str) -> None:
    base, trigger, _, *ctx = CASES[rule_id]
    assert rule_id in _rules_fired(base, trigger, ctx[0] if ctx else CONTEXT)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_passes_at_its_boundary(rule_id: str) -> None:
    base, _, boundary, *_ = CASES[rule_id]
    assert rule_id not in _rules_fired(base, boundary, BOUNDARY_CONTEXT.get(rule_id, CONTEXT))


def test_synthetic_identities_pass_in_a_test_environment() -> None:
    fired = _rules_fired(
        "avtale",
        _set("person.fodselsNr", _number("158312")),
        dataclasses.replace(CONTEXT, allow_synthetic=True),
    )
    assert "IDN-004" not in fired


def test_graduated_enforcement_turns_errors_into_warnings_until_a_date() -> None:
    model, message = _first_item(*BASES["avtale"])
    message[0]["avtale"][0]["konsultasjonType"] = "ZZ"
    soft = dataclasses.replace(CONTEXT, enforcement={"KOD-001": date(2026, 2, 1)})
    [item] = ModelValidator(model).validate(copy.deepcopy(message), soft).items
    assert [(f.rule_id, f.severity) for f in item.findings] == [("KOD-001", "warning")]
    assert item.value is not None  # accepted
    hard = dataclasses.replace(CONTEXT, enforcement={"KOD-001": date(2026, 1, 15)})
    [item] = ModelValidator(model).validate(copy.deepcopy(message), hard).items
    assert [(f.rule_id, f.severity) for f in item.findings] == [("KOD-001", "error")]
    assert item.value is None


def test_findings_name_the_code_list_version_they_used() -> None:
    model, message = _first_item(*BASES["kontakt"])
    message[0]["kontakt"][0]["omsorgsniva"] = "8"
    message[0]["kontakt"][0]["utDatoTid"] = None
    [item] = ModelValidator(model).validate(message, CONTEXT).items
    [finding] = item.findings
    assert finding.codelist_version == "volven-8406@2024-01-01 (sample)"


@pytest.mark.parametrize("days_ago", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("offset", ["-23:59", "-12:00", "+00:00", "+14:00", "+23:59"])
@pytest.mark.parametrize("clock", ["00:00:00", "12:04:00", "12:06:00", "23:59:59"])
def test_a_time_is_in_the_future_exactly_when_its_instant_is(
    days_ago: int, offset: str, clock: str
) -> None:
    """BUS-001 skips parsing times written on a day at least two before today; around that
    boundary, at the extreme UTC offsets, it must still agree with the instant itself."""
    text = f"{(NOW.date() - timedelta(days=days_ago)).isoformat()}T{clock}{offset}"
    in_future = datetime.fromisoformat(text) > NOW + timedelta(minutes=5)
    assert ("BUS-001" in _rules_fired("kontakt", _set("innDatoTid", text), CONTEXT)) is in_future
