"""Coverage against reporting obligations, on SQLite and PostgreSQL: over a month, units that
deliver every day, one that delivers some days, one that never reports (shown as missing, with
its name from the directory), one whose obligation starts mid-month; municipalities covered
through their units; an obligation's history kept when it is replaced."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from statestore.engine import StoreEngines
from statestore.enhetsregisteret import parse_units, read_file
from statestore.obligations import ObligationRepository
from statestore.receipts import NewReceipt, NewReceiptItem, ReceiptRepository
from statestore.units import UnitDirectory
from tests.contract.test_statestore_contract import engines

__all__ = ["engines"]

FIXTURES = Path(__file__).parents[1] / "fixtures" / "enhetsregisteret"
OSLO_SITE = "974152533"  # Oslo, 0301: delivers every day
BRAGERNES = "987654325"  # Drammen, 3301: delivers on Mondays
STROMSO = "974150050"  # Drammen, 3301: never reports
BRYGGEN = "974150069"  # Bergen, 4601: obliged from the 16th, never reports
NOVEMBER = date(2026, 11, 1)


async def delivered(engines: StoreEngines, unit: str, day: date) -> None:
    receipt_id = hashlib.sha256(f"{unit}{day}".encode()).hexdigest()[:32]
    receipts = ReceiptRepository(engines)
    await receipts.reserve(
        NewReceipt(
            receipt_id=receipt_id,
            unit=unit,
            message_type="HST_Avtale",
            version=1,
            vendor=None,
            software=None,
            software_version=None,
            idempotency_key=None,
            body_sha256=receipt_id * 2,
            received_at=datetime(day.year, day.month, day.day, 10, tzinfo=UTC),
            items=[NewReceiptItem(0, "/0/avtale/0", "A", None, "accepted", [])],
        )
    )
    await receipts.mark_validated(receipt_id, unit)


async def november(engines: StoreEngines) -> ObligationRepository:
    await UnitDirectory(engines).replace(parse_units(read_file(FIXTURES / "underenheter.json")))
    obligations = ObligationRepository(engines)
    for unit in (OSLO_SITE, BRAGERNES, STROMSO):
        await obligations.add(unit, "HST_Avtale", date(2026, 1, 1), actor="fhi")
    await obligations.add(BRYGGEN, "HST_Avtale", date(2026, 11, 16), actor="fhi")
    for n in range(30):
        day = NOVEMBER + timedelta(days=n)
        await delivered(engines, OSLO_SITE, day)
        if day.weekday() == 0:
            await delivered(engines, BRAGERNES, day)
    return obligations


async def test_coverage_over_a_month(engines: StoreEngines) -> None:
    obligations = await november(engines)
    last = date(2026, 11, 30)
    daily = await obligations.coverage("HST_Avtale", NOVEMBER, last, "day")
    assert len(daily.periods) == 30
    first, monday = daily.periods[0], daily.periods[1]  # 1 Nov 2026 is a Sunday
    assert (first.expected_units, first.delivered_units) == (3, 1)
    assert (monday.expected_units, monday.delivered_units) == (3, 2)
    assert (monday.expected_municipalities, monday.delivered_municipalities) == (2, 2)
    assert daily.periods[15].expected_units == 4  # Bryggen from the 16th
    assert daily.periods[15].expected_municipalities == 3
    missing = {m.unit: m for m in daily.missing}  # on the 30th, a Monday
    assert set(missing) == {STROMSO, BRYGGEN}
    assert missing[STROMSO].name == "DRAMMEN KOMMUNE HELSESTASJON STRØMSØ"
    assert missing[STROMSO].last_delivery is None  # never heard from
    assert missing[STROMSO].kommune_nr == "3301"
    # Silent for three days or more on the 30th: the two never heard from (Bragernes delivered).
    assert [m.unit for m in daily.silent] == [STROMSO, BRYGGEN]
    saturday = await obligations.coverage("HST_Avtale", NOVEMBER, date(2026, 11, 28))
    assert [m.unit for m in saturday.silent] == [STROMSO, BRYGGEN, BRAGERNES]
    assert saturday.silent[2].last_delivery == date(2026, 11, 23)

    monthly = await obligations.coverage("HST_Avtale", NOVEMBER, last, "month")
    [month] = monthly.periods
    assert (month.expected_units, month.delivered_units) == (4, 2)
    assert month.unit_coverage == 0.5
    assert month.municipality_coverage == 2 / 3
    weekly = await obligations.coverage("HST_Avtale", NOVEMBER, last, "week")
    assert [p.start.isoformat() for p in weekly.periods[:3]] == [
        "2026-11-01",
        "2026-11-02",
        "2026-11-09",
    ]
    assert weekly.periods[1].end == date(2026, 11, 8)
    assert (weekly.periods[1].delivered_units, weekly.periods[1].expected_units) == (2, 3)


async def test_a_replaced_obligation_keeps_its_history(engines: StoreEngines) -> None:
    obligations = ObligationRepository(engines)
    first = await obligations.add(STROMSO, "HST_Avtale", date(2026, 1, 1), actor="fhi")
    second = await obligations.add(
        STROMSO,
        "HST_Avtale",
        date(2026, 1, 1),
        valid_to=date(2026, 6, 30),
        actor="fhi",
        replaces=first.id,
    )
    assert [o.id for o in await obligations.find()] == [second.id]
    history = await obligations.find(include_ended=True)
    assert [(o.id, o.ended_by) for o in history] == [(first.id, "fhi"), (second.id, None)]
    after = await obligations.coverage("HST_Avtale", date(2026, 7, 1), date(2026, 7, 31), "month")
    assert after.periods[0].expected_units == 0
    assert after.periods[0].unit_coverage is None
    assert await obligations.end(second.id, "fhi")
    assert not await obligations.end(second.id, "fhi")


async def test_yesterdays_figures_for_the_metrics(engines: StoreEngines) -> None:
    obligations = await november(engines)
    # Monday 30 November: Oslo and Bragernes delivered; Strømsø and Bryggen never have.
    assert await obligations.yesterday("HST_Avtale", date(2026, 12, 1)) == (4, 2, 2)
    # Saturday 28 November: only Oslo; Bragernes last delivered on Monday the 23rd.
    assert await obligations.yesterday("HST_Avtale", date(2026, 11, 29)) == (4, 1, 3)
    assert await obligations.yesterday("NPR_Kontakt", date(2026, 12, 1)) == (0, 0, 0)


async def test_municipalities_counted_as_of_one_classification_version(
    engines: StoreEngines,
) -> None:
    """An obligation recorded with Drammen's 2020 number (3005) and one with its 2024 number
    (3301) are two municipalities as recorded, one as of the 2024 classification."""
    from validators.codelists import load_samples

    [kommuner] = [c for c in load_samples() if c.id == "kommunenummer"]
    obligations = ObligationRepository(engines)
    await obligations.add(BRAGERNES, "HST_Avtale", date(2026, 1, 1), kommune_nr="3005", actor="x")
    await obligations.add(STROMSO, "HST_Avtale", date(2026, 1, 1), kommune_nr="3301", actor="x")
    await delivered(engines, BRAGERNES, NOVEMBER)
    as_recorded = await obligations.coverage("HST_Avtale", NOVEMBER, NOVEMBER)
    assert as_recorded.periods[0].expected_municipalities == 2
    assert as_recorded.periods[0].municipality_coverage == 0.5
    mapped = await obligations.coverage(
        "HST_Avtale",
        NOVEMBER,
        NOVEMBER,
        municipality=lambda k: kommuner.as_of(k, date(2024, 1, 1))[0],
    )
    assert mapped.periods[0].expected_municipalities == 1
    assert mapped.periods[0].municipality_coverage == 1.0
    assert {m.kommune_nr for m in mapped.missing} == {"3301"}
