"""The review store's reads: search and paging over a filter, an item's details and history,
the access log, and the statistics and delivery calendar quality staff read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.events import CARE_TIMEZONE
from statestore.bulk import chunks
from statestore.engine import StoreEngines
from statestore.review.problems import ProblemPage, problem_page
from statestore.review.records import (
    MAX_PAGE_SIZE,
    SORTS,
    AccessRow,
    HistoryRow,
    Page,
    ReviewFilter,
    ReviewRow,
    Statistics,
    UnitDays,
    care_day,
)
from statestore.tables import (
    events,
    receipts,
    review_access_log,
    review_findings,
    review_history,
    review_items,
)


class ReviewQueries:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    # -- reading ---------------------------------------------------------------------------------

    async def search(
        self,
        flt: ReviewFilter,
        *,
        sort: str = "received",
        descending: bool = True,
        page: int = 1,
        page_size: int = 50,
    ) -> Page:
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        page = max(1, page)
        column = SORTS.get(sort, review_items.c.received_at)
        order = [column.desc() if descending else column.asc(), review_items.c.item_id]
        conditions = _conditions(flt)
        unfiltered_status = _conditions(_without_status(flt))
        async with self._engines.reader.connect() as conn:
            total = (
                await conn.execute(
                    select(func.count()).select_from(review_items).where(*conditions)
                )
            ).scalar_one()
            counts = {
                r.status: int(r.n)
                for r in await conn.execute(
                    select(review_items.c.status, func.count().label("n"))
                    .where(*unfiltered_status)
                    .group_by(review_items.c.status)
                )
            }
            rows = await conn.execute(
                _summary_columns()
                .where(*conditions)
                .order_by(*order)
                .limit(page_size)
                .offset((page - 1) * page_size)
            )
            found = [_row(r) for r in rows]
        return Page(found, int(total), counts, page, page_size)

    async def count(self, flt: ReviewFilter) -> int:
        async with self._engines.reader.connect() as conn:
            query = select(func.count()).select_from(review_items).where(*_conditions(flt))
            return int((await conn.execute(query)).scalar_one())

    async def ids(self, flt: ReviewFilter, limit: int, *, offset: int = 0) -> list[str]:
        """Item ids of a filtered set, oldest first: ``limit`` of them from ``offset``."""
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(review_items.c.item_id)
                .where(*_conditions(flt))
                .order_by(review_items.c.received_at, review_items.c.item_id)
                .limit(limit)
                .offset(offset)
            )
            return [r[0] for r in rows]

    async def id_chunks(self, flt: ReviewFilter, size: int = 1000) -> AsyncIterator[list[str]]:
        """Every item id of a filtered set, in chunks (keyset paging by id, so a chunk costs
        the same at the end as at the start and changes made between chunks lose nothing)."""
        after = ""
        while True:
            async with self._engines.reader.connect() as conn:
                rows = await conn.execute(
                    select(review_items.c.item_id)
                    .where(*_conditions(flt), review_items.c.item_id > after)
                    .order_by(review_items.c.item_id)
                    .limit(size)
                )
                chunk = [r[0] for r in rows]
            if not chunk:
                return
            yield chunk
            after = chunk[-1]

    async def summary_chunks(
        self, flt: ReviewFilter, size: int = 1000
    ) -> AsyncIterator[list[ReviewRow]]:
        """Every row of a filtered set without the items themselves (for exports), newest
        first, in chunks read by keyset (received_at, item_id): memory stays one chunk."""
        r = review_items
        last: tuple[datetime, str] | None = None
        while True:
            query = _summary_columns().where(*_conditions(flt))
            if last is not None:
                at, item_id = last
                query = query.where(
                    or_(r.c.received_at < at, and_(r.c.received_at == at, r.c.item_id > item_id))
                )
            async with self._engines.reader.connect() as conn:
                rows = await conn.execute(
                    query.order_by(r.c.received_at.desc(), r.c.item_id).limit(size)
                )
                chunk = [_row(row) for row in rows]
            if not chunk:
                return
            yield chunk
            last = (chunk[-1].received_at, chunk[-1].item_id)

    async def problems(
        self, flt: ReviewFilter, *, page: int = 1, page_size: int = 50
    ) -> ProblemPage:
        """Rejected items of the filter grouped into problems (statestore/review/problems.py)."""
        today = datetime.now(CARE_TIMEZONE).date()
        async with self._engines.reader.connect() as conn:
            return await problem_page(
                conn,
                _conditions(flt),
                today=today,
                page=max(1, page),
                page_size=max(1, min(page_size, MAX_PAGE_SIZE)),
            )

    async def suggestions(self) -> dict[str, list[str]]:
        """The vendors and software names in the index, for the filter's suggestions."""
        r = review_items
        out: dict[str, list[str]] = {}
        async with self._engines.reader.connect() as conn:
            for name, column in (("vendor", r.c.vendor), ("software", r.c.software)):
                rows = await conn.execute(
                    select(column).where(column.is_not(None)).distinct().order_by(column).limit(500)
                )
                out[name] = [row[0] for row in rows]
        return out

    async def get(self, item_id: str) -> ReviewRow | None:
        rows = await self.get_many([item_id])
        return rows[0] if rows else None

    async def get_many(self, item_ids: Sequence[str]) -> list[ReviewRow]:
        out: list[ReviewRow] = []
        async with self._engines.reader.connect() as conn:
            for chunk in chunks(list(item_ids), 500):
                query = _summary_columns(
                    review_items.c.item_json, review_items.c.block_json, review_items.c.sealed
                )
                for r in await conn.execute(query.where(review_items.c.item_id.in_(chunk))):
                    row = _row(r)
                    row.item = r.item_json
                    row.block = r.block_json
                    row.sealed = None if r.sealed is None else bytes(r.sealed)
                    out.append(row)
        order = {item_id: n for n, item_id in enumerate(item_ids)}
        return sorted(out, key=lambda row: order[row.item_id])

    async def resubmitted(self, row: ReviewRow) -> datetime | None:
        """When the unit's object was last stored after this item was rejected (a corrected
        resubmission, or a later report of the same object), or None."""
        if row.object_id is None:
            return None
        e = events
        async with self._engines.reader.connect() as conn:
            # Newest first, one row: MAX() would lose the column's type (text on SQLite).
            latest: datetime | None = (
                await conn.execute(
                    select(e.c.recorded_time)
                    .where(
                        e.c.unit == row.unit,
                        e.c.message_type == row.message_type,
                        e.c.object_id == row.object_id,
                        e.c.recorded_time > row.received_at,
                    )
                    .order_by(e.c.recorded_time.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            return latest

    async def recent_for_unit(self, unit: str, *, exclude: str, limit: int = 10) -> list[ReviewRow]:
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                _summary_columns()
                .where(review_items.c.unit == unit, review_items.c.item_id != exclude)
                .order_by(review_items.c.received_at.desc(), review_items.c.item_id)
                .limit(limit)
            )
            return [_row(r) for r in rows]

    async def history(self, item_id: str) -> list[HistoryRow]:
        h = review_history
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(select(h).where(h.c.item_id == item_id).order_by(h.c.seq))
            return [
                HistoryRow(r.at, r.actor, r.kind, r.old_value, r.new_value, r.text) for r in rows
            ]

    async def assignees(self) -> list[str]:
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(review_items.c.assignee)
                .where(review_items.c.assignee.is_not(None))
                .distinct()
                .order_by(review_items.c.assignee)
            )
            return [r[0] for r in rows]

    async def access_log(
        self,
        *,
        item_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[AccessRow]:
        a = review_access_log
        query = (
            select(a)
            .where(*_access_conditions(item_id, actor, action))
            .order_by(a.c.seq.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._engines.reader.connect() as conn:
            return [
                AccessRow(
                    int(r.seq),
                    r.at,
                    r.actor,
                    r.action,
                    r.item_id,
                    r.path,
                    r.reason,
                    r.item_count,
                    r.total_count,
                )
                for r in await conn.execute(query)
            ]

    async def access_count(
        self, *, item_id: str | None = None, actor: str | None = None, action: str | None = None
    ) -> int:
        a = review_access_log
        query = select(func.count()).select_from(a)
        async with self._engines.reader.connect() as conn:
            found = await conn.execute(query.where(*_access_conditions(item_id, actor, action)))
            return int(found.scalar_one())

    async def access_actors(self) -> list[str]:
        a = review_access_log
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(select(a.c.actor).distinct().order_by(a.c.actor).limit(500))
            return [r[0] for r in rows]

    # -- statistics ------------------------------------------------------------------------------

    async def statistics(self, flt: ReviewFilter, *, top: int = 10) -> Statistics:
        """Rejected items per day by rule, by unit, by vendor, and the items received per day
        (for the rejection share), over the filter (whose day range bounds the days)."""
        conditions = _conditions(flt)
        r, f = review_items, review_findings
        async with self._engines.reader.connect() as conn:
            by_day_rule: dict[str, dict[str, int]] = {}
            for row in await conn.execute(
                select(r.c.received_day, f.c.rule_id, func.count(func.distinct(r.c.item_id)))
                .select_from(r.join(f, f.c.item_id == r.c.item_id))
                .where(*conditions, f.c.severity == "error")
                .group_by(r.c.received_day, f.c.rule_id)
            ):
                by_day_rule.setdefault(row[1], {})[row[0]] = int(row[2])
            by_day = {
                row[0]: int(row[1])
                for row in await conn.execute(
                    select(r.c.received_day, func.count())
                    .where(*conditions)
                    .group_by(r.c.received_day)
                )
            }
            by_unit = [
                (row[0], int(row[1]))
                for row in await conn.execute(
                    select(r.c.unit, func.count().label("n"))
                    .where(*conditions)
                    .group_by(r.c.unit)
                    .order_by(func.count().desc(), r.c.unit)
                )
            ]
            vendor = func.coalesce(r.c.vendor, "")
            by_vendor = [
                (row[0], int(row[1]))
                for row in await conn.execute(
                    select(vendor, func.count())
                    .where(*conditions)
                    .group_by(vendor)
                    .order_by(func.count().desc(), vendor)
                )
            ]
            received = await self._received_by_day(conn, flt)
        days = sorted(set(by_day) | set(received))
        if flt.day_from and flt.day_to:
            days = [d.isoformat() for d in _day_range(flt.day_from, flt.day_to)]
        totals = sorted(
            ((rule, sum(per_day.values())) for rule, per_day in by_day_rule.items()),
            key=lambda pair: (-pair[1], pair[0]),
        )
        return Statistics(
            days=days,
            by_day_rule=by_day_rule,
            by_day=by_day,
            received_by_day=received,
            by_unit=by_unit,
            by_vendor=by_vendor,
            top_rules=totals[:top],
        )

    async def _received_by_day(self, conn: AsyncConnection, flt: ReviewFilter) -> dict[str, int]:
        rc = receipts
        query = select(rc.c.received_at, rc.c.item_count).where(rc.c.stage == "validated")
        if flt.unit:
            query = query.where(rc.c.unit == flt.unit)
        if flt.vendor:
            query = query.where(func.lower(rc.c.vendor) == flt.vendor.lower())
        if flt.message_type:
            query = query.where(rc.c.message_type == flt.message_type)
        if flt.version is not None:
            query = query.where(rc.c.version == flt.version)
        start, end = _instant_range(flt.day_from, flt.day_to)
        if start is not None:
            query = query.where(rc.c.received_at >= start)
        if end is not None:
            query = query.where(rc.c.received_at < end)
        out: dict[str, int] = {}
        for row in await conn.execute(query):
            day = care_day(row.received_at)
            out[day] = out.get(day, 0) + int(row.item_count)
        return out

    async def completeness(self, day_from: date, day_to: date) -> list[UnitDays]:
        """Messages each known unit delivered per day in [day_from, day_to], and its last
        delivery ever; a unit that has ever reported and is silent on a day shows 0."""
        rc = receipts
        start, end = _instant_range(day_from, day_to)
        async with self._engines.reader.connect() as conn:
            last = {
                row.unit: row.last
                for row in await conn.execute(
                    select(rc.c.unit, func.max(rc.c.received_at).label("last"))
                    .where(rc.c.stage == "validated")
                    .group_by(rc.c.unit)
                )
            }
            per_unit: dict[str, dict[str, int]] = {unit: {} for unit in last}
            for row in await conn.execute(
                select(rc.c.unit, rc.c.received_at).where(
                    rc.c.stage == "validated", rc.c.received_at >= start, rc.c.received_at < end
                )
            ):
                day = care_day(row.received_at)
                per_unit[row.unit][day] = per_unit[row.unit].get(day, 0) + 1
        return [
            UnitDays(unit, per_unit[unit], care_day(last[unit]) if last[unit] else None)
            for unit in sorted(per_unit)
        ]


# -- helpers -------------------------------------------------------------------------------------


def _summary_columns(*extra: Any) -> Select[Any]:
    r = review_items
    return select(
        r.c.item_id,
        r.c.receipt_id,
        r.c.item_index,
        r.c.path,
        r.c.unit,
        r.c.vendor,
        r.c.software,
        r.c.software_version,
        r.c.message_type,
        r.c.version,
        r.c.object_id,
        r.c.received_at,
        r.c.status,
        r.c.assignee,
        r.c.updated_at,
        r.c.replay_event_id,
        r.c.replayed_at,
        r.c.findings,
        *extra,
    )


def _row(r: Any) -> ReviewRow:
    return ReviewRow(
        item_id=r.item_id,
        receipt_id=r.receipt_id,
        item_index=r.item_index,
        path=r.path,
        unit=r.unit,
        vendor=r.vendor,
        software=r.software,
        software_version=r.software_version,
        message_type=r.message_type,
        version=r.version,
        object_id=r.object_id,
        received_at=r.received_at,
        status=r.status,
        assignee=r.assignee,
        updated_at=r.updated_at,
        replay_event_id=r.replay_event_id,
        replayed_at=r.replayed_at,
        findings=r.findings,
    )


def _without_status(flt: ReviewFilter) -> ReviewFilter:
    return ReviewFilter(**{**{n: getattr(flt, n) for n in flt.__slots__}, "status": None})


def _conditions(flt: ReviewFilter) -> list[Any]:
    r = review_items
    out: list[Any] = []
    if flt.unit:
        out.append(r.c.unit == flt.unit)
    if flt.vendor:  # as people type them: "dips" finds "DIPS"
        out.append(func.lower(r.c.vendor) == flt.vendor.lower())
    if flt.software:
        out.append(func.lower(r.c.software) == flt.software.lower())
    if flt.message_type:
        out.append(r.c.message_type == flt.message_type)
    if flt.version is not None:
        out.append(r.c.version == flt.version)
    if flt.status:
        out.append(r.c.status == flt.status)
    if flt.day_from:
        out.append(r.c.received_day >= flt.day_from.isoformat())
    if flt.day_to:
        out.append(r.c.received_day <= flt.day_to.isoformat())
    if flt.problem:
        p = review_findings.alias("problem_findings")
        out.append(
            exists()
            .where(and_(p.c.item_id == r.c.item_id, p.c.problem == flt.problem))
            .correlate(r)
        )
    if flt.rule_id or flt.level:
        # Its own alias of the findings, correlated to the items only: the statistics join the
        # findings in the outer query, and auto-correlation would then leave this subquery
        # with no FROM at all.
        f = review_findings.alias("filter_findings")
        finding = [f.c.item_id == r.c.item_id]
        if flt.rule_id:
            finding.append(f.c.rule_id == flt.rule_id)
        if flt.level:
            finding.append(f.c.level == flt.level)
        out.append(exists().where(and_(*finding)).correlate(r))
    return out


def _access_conditions(item_id: str | None, actor: str | None, action: str | None) -> list[Any]:
    a = review_access_log
    out: list[Any] = []
    if item_id is not None:
        out.append(a.c.item_id == item_id)
    if actor is not None:
        out.append(a.c.actor == actor)
    if action is not None:
        out.append(a.c.action == action)
    return out


def _instant_range(
    day_from: date | None, day_to: date | None
) -> tuple[datetime | None, datetime | None]:
    """Days in Norway as UTC instants [start of day_from, start of the day after day_to)."""

    def start_of(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=CARE_TIMEZONE).astimezone(UTC)

    return (
        start_of(day_from) if day_from else None,
        start_of(day_to + timedelta(days=1)) if day_to else None,
    )


def _day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
