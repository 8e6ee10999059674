"""The review of rejected items: the index of quarantined items, the workflow, notes, the access
log, replay bookkeeping and the statistics quality staff read.

* :meth:`ReviewRepository.index` is called by the quarantine indexer with a batch of rejected
  items and the consumer's next offsets, stored in one transaction (offsets live with the data,
  so an item is indexed exactly once however often the topic is replayed).
* Workflow: ``new → in_review → resolved | wont_fix | awaiting_resubmission`` (any status can be
  set from any other: staff correct mistakes); every change, assignment and note is appended to
  ``review_history`` with its author and time.
* Every read of an item (detail, export, replay) and every reveal of a masked identifier is
  appended to ``review_access_log`` by the caller, through :meth:`ReviewRepository.log_access`.
* :meth:`ReviewRepository.mark_replayed` records a replay after its events reached the log: the
  review item is resolved, and the sender's receipt item now names the new event (so it turns
  ``applied`` when the projector has applied it) and gets a ``replayed`` change in its feed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from eventlog.port import TopicPartition
from schemas.events import CARE_TIMEZONE
from statestore.dialect import insert_for
from statestore.engine import StoreEngines
from statestore.feed import append_changes
from statestore.offsets import store_offsets
from statestore.tables import (
    events,
    receipt_items,
    receipts,
    review_access_log,
    review_findings,
    review_history,
    review_items,
)

Status = Literal["new", "in_review", "resolved", "wont_fix", "awaiting_resubmission"]
STATUSES: tuple[Status, ...] = ("new", "in_review", "resolved", "wont_fix", "awaiting_resubmission")
AccessAction = Literal["list", "view", "reveal", "export", "replay"]
SORTS = {
    "received": review_items.c.received_at,
    "unit": review_items.c.unit,
    "vendor": review_items.c.vendor,
    "message_type": review_items.c.message_type,
    "status": review_items.c.status,
}
MAX_PAGE_SIZE = 500
_NAMESPACE = uuid.UUID("0b8f1a52-6c3e-5d7a-8e21-4f9c3b6d2a70")


def review_item_id(receipt_id: str, item_index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{receipt_id}\x1f{item_index}"))


def care_day(instant: datetime) -> str:
    return instant.astimezone(CARE_TIMEZONE).date().isoformat()


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """One item of the quarantine topic, as the indexer decoded it."""

    receipt_id: str
    item_index: int
    path: str
    unit: str
    message_type: str
    version: int
    object_id: str | None
    received_at: datetime
    item: Any
    block: dict[str, Any]
    findings: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ReviewFilter:
    unit: str | None = None
    vendor: str | None = None
    software: str | None = None
    message_type: str | None = None
    version: int | None = None
    rule_id: str | None = None
    level: str | None = None
    status: str | None = None
    day_from: date | None = None
    day_to: date | None = None  # inclusive

    def as_query(self) -> dict[str, str]:
        """The filter as query parameters (for links that keep it)."""
        out: dict[str, str] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if value is not None and value != "":
                out[name] = value.isoformat() if isinstance(value, date) else str(value)
        return out


@dataclass(slots=True)
class ReviewRow:
    item_id: str
    receipt_id: str
    item_index: int
    path: str
    unit: str
    vendor: str | None
    software: str | None
    software_version: str | None
    message_type: str
    version: int
    object_id: str | None
    received_at: datetime
    status: str
    assignee: str | None
    updated_at: datetime
    replay_event_id: str | None
    replayed_at: datetime | None
    findings: list[dict[str, Any]]
    item: Any = None
    block: dict[str, Any] = field(default_factory=dict)

    @property
    def rule_ids(self) -> list[str]:
        return sorted({f["rule_id"] for f in self.findings})


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[ReviewRow]
    total: int
    status_counts: dict[str, int]
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True, slots=True)
class HistoryRow:
    at: datetime
    actor: str
    kind: str
    old_value: str | None
    new_value: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class AccessRow:
    seq: int
    at: datetime
    actor: str
    action: str
    item_id: str | None
    path: str | None
    reason: str | None
    item_count: int | None


@dataclass(frozen=True, slots=True)
class Replayed:
    item_id: str
    event_id: str
    findings: list[dict[str, Any]]  # what re-validation found (warnings only, or none)


@dataclass(frozen=True, slots=True)
class Statistics:
    days: list[str]
    by_day_rule: dict[str, dict[str, int]]  # rule -> day -> rejected items
    by_day: dict[str, int]  # day -> rejected items
    received_by_day: dict[str, int]  # day -> items received (accepted or rejected)
    by_unit: list[tuple[str, int]]
    by_vendor: list[tuple[str, int]]
    top_rules: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class UnitDays:
    unit: str
    messages_by_day: dict[str, int]
    last_delivery: str | None


class ReviewRepository:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    # -- indexing ------------------------------------------------------------------------------

    async def index(
        self,
        consumer: str,
        items: Sequence[RejectedItem],
        next_offsets: Mapping[TopicPartition, int],
    ) -> int:
        """Add rejected items (once each) and store the consumer's offsets, in one transaction.
        Returns how many items were new."""
        now = datetime.now(UTC)
        dialect = self._engines.dialect
        inserted: set[str] = set()
        async with self._engines.writer.begin() as conn:
            if items:
                senders = await self._senders(conn, {i.receipt_id for i in items})
                rows = {}
                for i in items:
                    item_id = review_item_id(i.receipt_id, i.item_index)
                    sender = senders.get(i.receipt_id, (None, None, None))
                    rows[item_id] = {
                        "item_id": item_id,
                        "receipt_id": i.receipt_id,
                        "item_index": i.item_index,
                        "path": i.path,
                        "unit": i.unit,
                        "vendor": sender[0],
                        "software": sender[1],
                        "software_version": sender[2],
                        "message_type": i.message_type,
                        "version": i.version,
                        "object_id": i.object_id,
                        "received_at": i.received_at,
                        "received_day": care_day(i.received_at),
                        "item_json": i.item,
                        "block_json": i.block,
                        "findings": i.findings,
                        "status": "new",
                        "assignee": None,
                        "updated_at": now,
                    }
                stmt = (
                    insert_for(dialect, review_items)
                    .on_conflict_do_nothing(index_elements=["item_id"])
                    .returning(review_items.c.item_id)
                )
                inserted = {r[0] for r in await conn.execute(stmt, list(rows.values()))}
                finding_rows = [
                    {
                        "item_id": item_id,
                        "position": n,
                        "rule_id": f["rule_id"],
                        "level": f["level"],
                        "severity": f["severity"],
                        "path": f["path"][:500],
                    }
                    for item_id in sorted(inserted)
                    for n, f in enumerate(rows[item_id]["findings"])
                ]
                if finding_rows:
                    await conn.execute(review_findings.insert(), finding_rows)
            await store_offsets(conn, dialect, consumer, next_offsets)
        return len(inserted)

    async def _senders(
        self, conn: AsyncConnection, receipt_ids: set[str]
    ) -> dict[str, tuple[str | None, str | None, str | None]]:
        r = receipts
        rows = await conn.execute(
            select(r.c.receipt_id, r.c.vendor, r.c.software, r.c.software_version).where(
                r.c.receipt_id.in_(sorted(receipt_ids))
            )
        )
        return {row.receipt_id: (row.vendor, row.software, row.software_version) for row in rows}

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

    async def ids(self, flt: ReviewFilter, limit: int) -> list[str]:
        """Item ids of a filtered set, oldest first, at most ``limit``."""
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(review_items.c.item_id)
                .where(*_conditions(flt))
                .order_by(review_items.c.received_at, review_items.c.item_id)
                .limit(limit)
            )
            return [r[0] for r in rows]

    async def summaries(self, flt: ReviewFilter, limit: int) -> list[ReviewRow]:
        """Rows of a filtered set without the items themselves (for exports), newest first."""
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                _summary_columns()
                .where(*_conditions(flt))
                .order_by(review_items.c.received_at.desc(), review_items.c.item_id)
                .limit(limit)
            )
            return [_row(r) for r in rows]

    async def get(self, item_id: str) -> ReviewRow | None:
        rows = await self.get_many([item_id])
        return rows[0] if rows else None

    async def get_many(self, item_ids: Sequence[str]) -> list[ReviewRow]:
        out: list[ReviewRow] = []
        async with self._engines.reader.connect() as conn:
            for chunk in _chunks(list(item_ids), 500):
                query = _summary_columns(review_items.c.item_json, review_items.c.block_json)
                for r in await conn.execute(query.where(review_items.c.item_id.in_(chunk))):
                    row = _row(r)
                    row.item = r.item_json
                    row.block = r.block_json
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

    # -- workflow --------------------------------------------------------------------------------

    async def change(
        self,
        item_ids: Sequence[str],
        actor: str,
        *,
        status: Status | None = None,
        assignee: str | None = None,
        note: str | None = None,
    ) -> int:
        """Set the status and/or assignee (``""`` unassigns) of items and/or add a note to each,
        in one transaction. Returns how many items exist among ``item_ids``."""
        now = datetime.now(UTC)
        r = review_items
        changed = 0
        async with self._engines.writer.begin() as conn:
            for chunk in _chunks(list(dict.fromkeys(item_ids)), 500):
                current = {
                    row.item_id: row
                    for row in await conn.execute(
                        select(r.c.item_id, r.c.status, r.c.assignee).where(r.c.item_id.in_(chunk))
                    )
                }
                changed += len(current)
                history: list[dict[str, Any]] = []
                for item_id, row in current.items():
                    entry = {"item_id": item_id, "at": now, "actor": actor, "text": None}
                    if status is not None and row.status != status:
                        history.append(
                            {
                                **entry,
                                "kind": "status",
                                "old_value": row.status,
                                "new_value": status,
                            }
                        )
                    new_assignee = (assignee or None) if assignee is not None else row.assignee
                    if new_assignee != row.assignee:
                        history.append(
                            {
                                **entry,
                                "kind": "assignee",
                                "old_value": row.assignee,
                                "new_value": new_assignee,
                            }
                        )
                    if note:
                        history.append(
                            {**entry, "kind": "note", "old_value": None, "new_value": None}
                            | {"text": note}
                        )
                values: dict[str, Any] = {"updated_at": now}
                if status is not None:
                    values["status"] = status
                if assignee is not None:
                    values["assignee"] = assignee or None
                if current:
                    await conn.execute(
                        update(r).where(r.c.item_id.in_(sorted(current))).values(**values)
                    )
                if history:
                    await conn.execute(review_history.insert(), history)
        return changed

    async def mark_replayed(self, replays: Sequence[Replayed], actor: str) -> int:
        """Record replays whose events the log has stored: resolve each review item and point
        the sender's receipt item at its new event. Items already marked are left as they are.
        Returns how many were marked now."""
        now = datetime.now(UTC)
        r, ri = review_items, receipt_items
        marked = 0
        async with self._engines.writer.begin() as conn:
            by_id = {x.item_id: x for x in replays}
            rows = await conn.execute(
                select(r.c.item_id, r.c.receipt_id, r.c.item_index, r.c.unit, r.c.status).where(
                    r.c.item_id.in_(sorted(by_id)), r.c.replay_event_id.is_(None)
                )
            )
            changes: set[tuple[str, str, Literal["replayed"]]] = set()
            for row in rows.all():
                replay = by_id[row.item_id]
                await conn.execute(
                    update(r)
                    .where(r.c.item_id == row.item_id)
                    .values(
                        status="resolved",
                        replay_event_id=replay.event_id,
                        replayed_at=now,
                        updated_at=now,
                    )
                )
                await conn.execute(
                    review_history.insert(),
                    [
                        {
                            "item_id": row.item_id,
                            "at": now,
                            "actor": actor,
                            "kind": "replay",
                            "old_value": row.status,
                            "new_value": replay.event_id,
                            "text": None,
                        }
                    ],
                )
                result = await conn.execute(
                    update(ri)
                    .where(
                        ri.c.receipt_id == row.receipt_id,
                        ri.c.item_index == row.item_index,
                        ri.c.outcome == "rejected",
                    )
                    .values(outcome="accepted", event_id=replay.event_id, findings=replay.findings)
                )
                if result.rowcount:
                    await conn.execute(
                        update(receipts)
                        .where(receipts.c.receipt_id == row.receipt_id)
                        .values(
                            accepted_count=receipts.c.accepted_count + 1,
                            rejected_count=receipts.c.rejected_count - 1,
                        )
                    )
                    changes.add((row.unit, row.receipt_id, "replayed"))
                marked += 1
            await append_changes(conn, sorted(changes))
        return marked

    # -- access log ------------------------------------------------------------------------------

    async def log_access(
        self,
        actor: str,
        action: AccessAction,
        *,
        item_ids: Iterable[str | None] = (None,),
        path: str | None = None,
        reason: str | None = None,
        item_count: int | None = None,
        correlation_id: str | None = None,
    ) -> None:
        now = datetime.now(UTC)
        rows = [
            {
                "at": now,
                "actor": actor,
                "action": action,
                "item_id": item_id,
                "path": path,
                "reason": reason,
                "item_count": item_count,
                "correlation_id": correlation_id,
            }
            for item_id in item_ids
        ]
        if rows:
            async with self._engines.writer.begin() as conn:
                await conn.execute(review_access_log.insert(), rows)

    async def access_log(
        self, *, item_id: str | None = None, actor: str | None = None, limit: int = 200
    ) -> list[AccessRow]:
        a = review_access_log
        query = select(a).order_by(a.c.seq.desc()).limit(limit)
        if item_id is not None:
            query = query.where(a.c.item_id == item_id)
        if actor is not None:
            query = query.where(a.c.actor == actor)
        async with self._engines.reader.connect() as conn:
            return [
                AccessRow(
                    int(r.seq), r.at, r.actor, r.action, r.item_id, r.path, r.reason, r.item_count
                )
                for r in await conn.execute(query)
            ]

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
            query = query.where(rc.c.vendor == flt.vendor)
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
    r, f = review_items, review_findings
    out: list[Any] = []
    if flt.unit:
        out.append(r.c.unit == flt.unit)
    if flt.vendor:
        out.append(r.c.vendor == flt.vendor)
    if flt.software:
        out.append(r.c.software == flt.software)
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
    if flt.rule_id or flt.level:
        finding = [f.c.item_id == r.c.item_id]
        if flt.rule_id:
            finding.append(f.c.rule_id == flt.rule_id)
        if flt.level:
            finding.append(f.c.level == flt.level)
        out.append(exists().where(and_(*finding)))
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


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
