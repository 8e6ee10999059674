"""Reporting obligations — which units must report which message types from which date — and
coverage: who delivered against what was expected, per day, week or month.

An obligation names a unit (an organisation number, usually a sub-unit: the site that reports),
a message type and the days it holds (``valid_from``, ``valid_to`` inclusive or open), and the
municipality it reports for when it reports on one's behalf (else the directory's municipality
of the unit, :mod:`statestore.units`). Obligations are never changed in place: ending one sets
``ended_at`` and a change adds a new row, so "what was expected on that day, as we knew it then"
can be answered later.

Coverage counts a unit as delivered in a period when it had a validated message of the type
then (``receipts``); a municipality when one of its obligated units did. A unit that was never
heard from is as missing as one that stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from sqlalchemy import func, select, update

from schemas.events import CARE_TIMEZONE
from statestore.bulk import chunks
from statestore.engine import StoreEngines
from statestore.review.records import care_day
from statestore.tables import receipts, reporting_obligations
from statestore.units import UnitDirectory

Period = Literal["day", "week", "month"]
SILENT_DAYS = 3  # a unit with no delivery for this many days is silent (the metric, the alert)


@dataclass(frozen=True, slots=True)
class Obligation:
    id: int
    unit: str
    kommune_nr: str | None
    message_type: str
    valid_from: date
    valid_to: date | None
    recorded_at: datetime
    recorded_by: str
    ended_at: datetime | None = None
    ended_by: str | None = None

    def holds_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class MissingUnit:
    unit: str
    name: str | None
    kommune_nr: str | None
    last_delivery: date | None  # up to the period's end, for this type (None: never heard from)


@dataclass(frozen=True, slots=True)
class CoveragePeriod:
    start: date
    end: date  # inclusive
    expected_units: int
    delivered_units: int
    expected_municipalities: int
    delivered_municipalities: int

    @property
    def unit_coverage(self) -> float | None:
        return self.delivered_units / self.expected_units if self.expected_units else None

    @property
    def municipality_coverage(self) -> float | None:
        if not self.expected_municipalities:
            return None
        return self.delivered_municipalities / self.expected_municipalities


@dataclass(frozen=True, slots=True)
class Coverage:
    message_type: str
    period: Period
    periods: list[CoveragePeriod]
    missing: list[MissingUnit]  # expected in the last period, no delivery in it
    silent: list[MissingUnit]  # expected on the last day, nothing in the last silent_days days


class ObligationRepository:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    async def add(
        self,
        unit: str,
        message_type: str,
        valid_from: date,
        *,
        valid_to: date | None = None,
        kommune_nr: str | None = None,
        actor: str,
        replaces: int | None = None,
    ) -> Obligation:
        """A new obligation; with ``replaces``, that one ends in the same transaction."""
        t = reporting_obligations
        now = datetime.now(UTC)
        async with self._engines.writer.begin() as conn:
            if replaces is not None:
                await conn.execute(
                    update(t)
                    .where(t.c.id == replaces, t.c.ended_at.is_(None))
                    .values(ended_at=now, ended_by=actor[:200])
                )
            row = (
                await conn.execute(
                    t.insert()
                    .values(
                        unit=unit,
                        kommune_nr=kommune_nr,
                        message_type=message_type,
                        valid_from=valid_from,
                        valid_to=valid_to,
                        recorded_at=now,
                        recorded_by=actor[:200],
                    )
                    .returning(t.c.id)
                )
            ).scalar_one()
        return Obligation(
            int(row), unit, kommune_nr, message_type, valid_from, valid_to, now, actor[:200]
        )

    async def end(self, obligation_id: int, actor: str) -> bool:
        t = reporting_obligations
        async with self._engines.writer.begin() as conn:
            done = await conn.execute(
                update(t)
                .where(t.c.id == obligation_id, t.c.ended_at.is_(None))
                .values(ended_at=datetime.now(UTC), ended_by=actor[:200])
            )
        return bool(done.rowcount)

    async def find(
        self, *, message_type: str | None = None, include_ended: bool = False
    ) -> list[Obligation]:
        t = reporting_obligations
        query = select(t).order_by(t.c.message_type, t.c.unit, t.c.valid_from, t.c.id)
        if message_type is not None:
            query = query.where(t.c.message_type == message_type)
        if not include_ended:
            query = query.where(t.c.ended_at.is_(None))
        async with self._engines.reader.connect() as conn:
            return [
                Obligation(
                    int(r.id),
                    r.unit,
                    r.kommune_nr,
                    r.message_type,
                    r.valid_from,
                    r.valid_to,
                    r.recorded_at,
                    r.recorded_by,
                    r.ended_at,
                    r.ended_by,
                )
                for r in await conn.execute(query)
            ]

    async def coverage(
        self,
        message_type: str,
        first: date,
        last: date,
        period: Period = "day",
        *,
        municipality: Callable[[str], str] | None = None,
        silent_days: int = SILENT_DAYS,
    ) -> Coverage:
        """Expected and delivered units and municipalities per period in [first, last];
        ``municipality`` maps each municipality number (to one classification version, so that
        numbers from before a reform count as the municipality they became)."""
        obligations = [
            o
            for o in await self.find(message_type=message_type)
            if o.valid_from <= last and (o.valid_to is None or o.valid_to >= first)
        ]
        directory = UnitDirectory(self._engines)
        units = await directory.get_many(o.unit for o in obligations)
        obliged = {o.unit for o in obligations}
        delivered_days = await self._delivery_days(message_type, obliged, first, last)
        last_ever = await self.last_deliveries(
            message_type, obliged, before=last + timedelta(days=1)
        )
        periods: list[CoveragePeriod] = []
        missing: list[MissingUnit] = []
        bounds = _periods(first, last, period)
        for n, (start, end) in enumerate(bounds):
            days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
            expected: dict[str, str | None] = {}
            for o in obligations:
                if any(o.holds_on(d) for d in days):
                    unit = units.get(o.unit)
                    kommune = o.kommune_nr or (unit.kommune_nr if unit else None)
                    expected[o.unit] = (
                        municipality(kommune) if kommune and municipality else kommune
                    )
            delivered = {
                u for u in expected if any(start <= d <= end for d in delivered_days.get(u, ()))
            }
            municipalities = {k for k in expected.values() if k}
            covered = {expected[u] for u in delivered if expected[u]}
            periods.append(
                CoveragePeriod(
                    start, end, len(expected), len(delivered), len(municipalities), len(covered)
                )
            )
            if n == len(bounds) - 1:
                missing = [
                    MissingUnit(
                        u,
                        units[u].name if u in units else None,
                        expected[u],
                        last_ever.get(u),
                    )
                    for u in sorted(set(expected) - delivered)
                ]
        since = last - timedelta(days=silent_days - 1)
        on_last = {o.unit: o for o in obligations if o.holds_on(last)}
        silent = [
            MissingUnit(
                u,
                units[u].name if u in units else None,
                o.kommune_nr or (units[u].kommune_nr if u in units else None),
                last_ever.get(u),
            )
            for u, o in sorted(on_last.items())
            if u not in last_ever or last_ever[u] < since
        ]
        return Coverage(message_type, period, periods, missing, silent)

    async def _delivery_days(
        self, message_type: str, units: set[str], first: date, last: date
    ) -> dict[str, set[date]]:
        """The days (in Norway) in [first, last] each unit had a validated message of the type."""
        rc = receipts
        start, end = _instants(first, last)
        out: dict[str, set[date]] = {}
        async with self._engines.reader.connect() as conn:
            for chunk in chunks(sorted(units), 500):
                rows = await conn.execute(
                    select(rc.c.unit, rc.c.received_at).where(
                        rc.c.message_type == message_type,
                        rc.c.stage == "validated",
                        rc.c.unit.in_(chunk),
                        rc.c.received_at >= start,
                        rc.c.received_at < end,
                    )
                )
                for unit, received_at in rows:
                    out.setdefault(unit, set()).add(date.fromisoformat(care_day(received_at)))
        return out

    async def last_deliveries(
        self, message_type: str, units: set[str], *, before: date
    ) -> dict[str, date]:
        """Each unit's last day (in Norway) before ``before`` with a validated message of the
        type."""
        rc = receipts
        out: dict[str, date] = {}
        until = _instants(before, before)[0]  # the start of that day
        async with self._engines.reader.connect() as conn:
            for chunk in chunks(sorted(units), 500):
                rows = await conn.execute(
                    select(rc.c.unit, func.max(rc.c.received_at))
                    .where(
                        rc.c.message_type == message_type,
                        rc.c.stage == "validated",
                        rc.c.unit.in_(chunk),
                        rc.c.received_at < until,
                    )
                    .group_by(rc.c.unit)
                )
                for unit, latest in rows:
                    # MAX() comes back as text on SQLite (the column's type is lost).
                    at = datetime.fromisoformat(latest) if isinstance(latest, str) else latest
                    if at.tzinfo is None:
                        at = at.replace(tzinfo=UTC)
                    out[unit] = date.fromisoformat(care_day(at))
        return out

    async def yesterday(
        self, message_type: str, today: date, *, silent_days: int = SILENT_DAYS
    ) -> tuple[int, int, int]:
        """Yesterday's (expected, delivered) units, and the units expected yesterday with no
        delivery in the last ``silent_days`` days: what the coverage metrics show."""
        day = today - timedelta(days=1)
        coverage = await self.coverage(message_type, day, day, "day", silent_days=silent_days)
        [period] = coverage.periods
        return period.expected_units, period.delivered_units, len(coverage.silent)


def _instants(first: date, last: date) -> tuple[datetime, datetime]:
    """Days in Norway as UTC instants [start of first, start of the day after last)."""

    def start_of(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=CARE_TIMEZONE).astimezone(UTC)

    return start_of(first), start_of(last + timedelta(days=1))


def _periods(first: date, last: date, period: Period) -> list[tuple[date, date]]:
    out: list[tuple[date, date]] = []
    start = first
    while start <= last:
        if period == "day":
            end = start
        elif period == "week":
            end = start + timedelta(days=6 - start.weekday())  # to Sunday
        else:
            following = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
            end = following - timedelta(days=1)
        end = min(end, last)
        out.append((start, end))
        start = end + timedelta(days=1)
    return out
