"""Applying events to history and last-known state, with the consumer's offsets in the same
transaction: a crash before the commit replays the batch, a crash after it skips the batch, and
either way every event is applied exactly once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from eventlog.port import TopicPartition
from schemas.events import Event
from statestore.dialect import insert_for
from statestore.engine import StoreEngines
from statestore.feed import ChangeKind, append_changes
from statestore.tables import (
    consumer_offsets,
    events,
    integrity_findings,
    object_versions,
    objects,
)

_T = TypeVar("_T")
ObjectKey = tuple[str, str, str]  # unit, message type, object id


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event in an object's history, as the fold sees it."""

    event_id: str
    version: int
    action: str
    valid_time: datetime
    recorded_time: datetime
    payload: dict[str, Any]
    item_index: int = 0
    context: dict[str, Any] = field(default_factory=dict)
    clinical_time: str | None = None


def history_entry(event: Event) -> HistoryEntry:
    """How an event stands in its object's history."""
    return HistoryEntry(
        event.event_id,
        event.version,
        event.action,
        event.valid_time,
        event.recorded_time,
        event.payload,
        event.item_index,
        event.context,
        event.clinical_time,
    )


def fold_order(entry: HistoryEntry) -> tuple[datetime, datetime, int, str]:
    """The one order histories fold in: valid time, then recorded time, then position in the
    message, then event id, so that the order never depends on arrival."""
    return (entry.valid_time, entry.recorded_time, entry.item_index, entry.event_id)


@dataclass(frozen=True, slots=True)
class FoldStep:
    """The object's state right after one event."""

    entry: HistoryEntry
    state: dict[str, Any] | None
    deleted: bool


@dataclass(frozen=True, slots=True)
class Violation:
    """An integrity finding the fold made about one event (the rule catalogue gives its text)."""

    event_id: str
    rule_id: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FoldResult:
    steps: tuple[FoldStep, ...]
    violations: tuple[Violation, ...] = ()

    @property
    def last(self) -> FoldStep:
        return self.steps[-1]


# A pure function from an object's history, in fold order, to its states and findings.
Fold = Callable[[Sequence[HistoryEntry]], FoldResult]


@dataclass(frozen=True, slots=True)
class SourcedEvent:
    event: Event
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied_event_ids: frozenset[str]
    duplicates: int
    # Integrity findings on this batch's events, as (message type, rule id).
    violations: tuple[tuple[str, str], ...] = ()

    @property
    def applied(self) -> int:
        return len(self.applied_event_ids)


@dataclass(frozen=True, slots=True)
class ObjectView:
    unit: str
    message_type: str
    object_id: str
    version: int
    state: dict[str, Any] | None
    deleted: bool
    event_count: int
    last_event_id: str
    valid_time: datetime
    updated_at: datetime | None
    context: dict[str, Any] | None = None
    clinical_time: str | None = None


_HISTORY_COLUMNS = (
    events.c.unit,
    events.c.message_type,
    events.c.object_id,
    events.c.event_id,
    events.c.version,
    events.c.action,
    events.c.valid_time,
    events.c.recorded_time,
    events.c.payload,
    events.c.item_index,
    events.c.context,
    events.c.clinical_time,
)
_FOLD_ORDER = (events.c.valid_time, events.c.recorded_time, events.c.item_index, events.c.event_id)


def _entry(row: Any) -> HistoryEntry:
    return HistoryEntry(
        row.event_id,
        row.version,
        row.action,
        row.valid_time,
        row.recorded_time,
        row.payload,
        row.item_index,
        row.context or {},
        row.clinical_time,
    )


def _view(
    unit: str, message_type: str, object_id: str, result: FoldResult, updated_at: datetime | None
) -> ObjectView:
    last = result.last
    return ObjectView(
        unit,
        message_type,
        object_id,
        last.entry.version,
        last.state,
        last.deleted,
        len(result.steps),
        last.entry.event_id,
        last.entry.valid_time,
        updated_at,
        last.entry.context,
        last.entry.clinical_time,
    )


def _versions(
    unit: str, message_type: str, object_id: str, result: FoldResult
) -> list[dict[str, Any]]:
    """Intervals of valid time: each version lasts until the next one with a later valid time
    (events with the same valid time collapse into the last of them)."""
    by_start: dict[datetime, FoldStep] = {}
    for step in result.steps:
        by_start[step.entry.valid_time] = step
    starts = sorted(by_start)
    rows = []
    for i, start in enumerate(starts):
        step = by_start[start]
        rows.append(
            {
                "unit": unit,
                "message_type": message_type,
                "object_id": object_id,
                "valid_from": start,
                "valid_to": starts[i + 1] if i + 1 < len(starts) else None,
                "state": step.state,
                "deleted": step.deleted,
                "context": step.entry.context,
                "clinical_time": step.entry.clinical_time,
                "event_id": step.entry.event_id,
            }
        )
    return rows


class StateRepository:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    async def load_offsets(self, consumer: str) -> dict[TopicPartition, int]:
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(
                    consumer_offsets.c.topic,
                    consumer_offsets.c.partition,
                    consumer_offsets.c.next_offset,
                ).where(consumer_offsets.c.consumer == consumer)
            )
            return {TopicPartition(r.topic, r.partition): int(r.next_offset) for r in rows}

    async def apply(
        self,
        consumer: str,
        batch: Sequence[SourcedEvent],
        next_offsets: Mapping[TopicPartition, int],
        folds: Mapping[str, Fold],
    ) -> ApplyResult:
        """Append new events, re-fold the objects they touch with their message type's fold
        (state, versions, integrity findings), and store the consumer's next offsets, all in
        one transaction."""
        now = datetime.now(UTC)
        dialect = self._engines.dialect
        violations: list[tuple[str, str]] = []
        async with self._engines.writer.begin() as conn:
            unique: dict[str, SourcedEvent] = {}
            for sourced in batch:
                unique.setdefault(sourced.event.event_id, sourced)
            inserted: set[str] = set()
            if unique:
                # ON CONFLICT DO NOTHING ... RETURNING names the events that are new, even when
                # another projector instance inserts the same events concurrently.
                stmt = (
                    insert_for(dialect, events)
                    .on_conflict_do_nothing(index_elements=["event_id"])
                    .returning(events.c.event_id)
                )
                rows = [_event_row(s, now) for s in unique.values()]
                result = await conn.execute(stmt, rows)
                inserted = {r[0] for r in result}
            if inserted:
                touched = {
                    (s.event.unit, s.event.message_type, s.event.object_id)
                    for event_id, s in unique.items()
                    if event_id in inserted
                }
                found = await self._refold(conn, touched, folds, now)
                violations = [(mt, rule) for event_id, mt, rule in found if event_id in inserted]
                flagged = {event_id for event_id, _, _ in found}
                changed: dict[str, tuple[str, str, ChangeKind]] = {}
                for event_id in inserted:
                    e = unique[event_id].event
                    kind: ChangeKind = "integrity" if event_id in flagged else "applied"
                    if changed.get(e.receipt_id, ("", "", "applied"))[2] != "integrity":
                        changed[e.receipt_id] = (e.unit, e.receipt_id, kind)
                await append_changes(conn, sorted(changed.values()))
            if next_offsets:
                stmt = insert_for(dialect, consumer_offsets)
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["consumer", "topic", "partition"],
                        set_={"next_offset": stmt.excluded.next_offset},
                    ),
                    [
                        {
                            "consumer": consumer,
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "next_offset": off,
                        }
                        for tp, off in next_offsets.items()
                    ],
                )
        return ApplyResult(
            applied_event_ids=frozenset(inserted),
            duplicates=len(batch) - len(inserted),
            violations=tuple(violations),
        )

    async def _histories(
        self, conn: AsyncConnection, keys: Iterable[ObjectKey]
    ) -> dict[ObjectKey, list[HistoryEntry]]:
        histories: dict[ObjectKey, list[HistoryEntry]] = {k: [] for k in keys}
        for (unit, message_type), object_ids in _by_unit_and_type(histories):
            result = await conn.execute(
                select(*_HISTORY_COLUMNS)
                .where(
                    events.c.unit == unit,
                    events.c.message_type == message_type,
                    events.c.object_id.in_(object_ids),
                )
                .order_by(*_FOLD_ORDER)
            )
            for r in result:
                histories[(r.unit, r.message_type, r.object_id)].append(_entry(r))
        return histories

    async def _refold(
        self,
        conn: AsyncConnection,
        keys: set[ObjectKey],
        folds: Mapping[str, Fold],
        now: datetime,
    ) -> list[tuple[str, str, str]]:
        """Re-fold ``keys``; returns the integrity findings as (event id, type, rule id)."""
        object_rows, version_rows, finding_rows = [], [], []
        for (unit, message_type, object_id), history in (await self._histories(conn, keys)).items():
            result = folds[message_type](history)
            view = _view(unit, message_type, object_id, result, now)
            object_rows.append(
                {
                    "unit": unit,
                    "message_type": message_type,
                    "object_id": object_id,
                    "version": view.version,
                    "state": view.state,
                    "deleted": view.deleted,
                    "event_count": view.event_count,
                    "last_event_id": view.last_event_id,
                    "valid_time": view.valid_time,
                    "updated_at": now,
                    "context": view.context,
                    "clinical_time": view.clinical_time,
                }
            )
            version_rows += _versions(unit, message_type, object_id, result)
            finding_rows += [
                {
                    "event_id": v.event_id,
                    "rule_id": v.rule_id,
                    "unit": unit,
                    "message_type": message_type,
                    "object_id": object_id,
                    "params": v.params,
                }
                for v in result.violations
            ]
        stmt = insert_for(self._engines.dialect, objects)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["unit", "message_type", "object_id"],
                set_={
                    c: getattr(stmt.excluded, c)
                    for c in (
                        "version",
                        "state",
                        "deleted",
                        "event_count",
                        "last_event_id",
                        "valid_time",
                        "updated_at",
                        "context",
                        "clinical_time",
                    )
                },
            ),
            object_rows,
        )
        for table in (object_versions, integrity_findings):
            for (unit, message_type), object_ids in _by_unit_and_type(keys):
                await conn.execute(
                    delete(table).where(
                        table.c.unit == unit,
                        table.c.message_type == message_type,
                        table.c.object_id.in_(object_ids),
                    )
                )
        if version_rows:
            await conn.execute(object_versions.insert(), version_rows)
        if finding_rows:
            await conn.execute(integrity_findings.insert(), finding_rows)
        return [
            (str(r["event_id"]), str(r["message_type"]), str(r["rule_id"])) for r in finding_rows
        ]

    async def get_object(self, unit: str, message_type: str, object_id: str) -> ObjectView | None:
        async with self._engines.reader.connect() as conn:
            row = (
                await conn.execute(
                    select(objects).where(
                        objects.c.unit == unit,
                        objects.c.message_type == message_type,
                        objects.c.object_id == object_id,
                    )
                )
            ).first()
        if row is None:
            return None
        return ObjectView(
            row.unit,
            row.message_type,
            row.object_id,
            row.version,
            row.state,
            row.deleted,
            row.event_count,
            row.last_event_id,
            row.valid_time,
            row.updated_at,
            row.context,
            row.clinical_time,
        )

    async def state_at(
        self,
        unit: str,
        message_type: str,
        object_id: str,
        fold: Fold,
        *,
        valid_before: datetime | None = None,
        known_at: datetime | None = None,
    ) -> ObjectView | None:
        """The object's state from the events valid before ``valid_before`` that the register
        had recorded by ``known_at``: the fold of that part of its history."""
        if valid_before is None and known_at is None:
            return await self.get_object(unit, message_type, object_id)
        query = select(*_HISTORY_COLUMNS).where(
            events.c.unit == unit,
            events.c.message_type == message_type,
            events.c.object_id == object_id,
        )
        if valid_before is not None:
            query = query.where(events.c.valid_time < valid_before)
        if known_at is not None:
            query = query.where(events.c.recorded_time <= known_at)
        async with self._engines.reader.connect() as conn:
            history = [_entry(r) for r in await conn.execute(query.order_by(*_FOLD_ORDER))]
        if not history:
            return None
        return _view(unit, message_type, object_id, fold(history), None)

    async def stats(
        self,
        message_type: str,
        *,
        at: datetime,
        group_by: Sequence[tuple[str, str, str]],
        status: str | None = None,
        unit: str | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of a type that existed (not deleted) at the instant ``at``, counted by
        ``group_by``: (name, source, key) with source "unit", "month", "context" or "state".
        Reads only the versions table (plans in docs/state-queries.md)."""
        v = object_versions
        columns = []
        for name, source, key in group_by:
            if source == "unit":
                column: Any = v.c.unit
            elif source == "month":
                column = func.substr(v.c.clinical_time, 1, 7)
            elif source == "context":
                column = v.c.context[key].as_string()
            else:
                column = v.c.state[key].as_string()
            columns.append(column.label(name))
        valid_at: ColumnElement[bool]
        if self._engines.dialect == "postgresql":
            # Matches the GiST index of migration 0004: the versions whose (from, to] holds at.
            valid_at = func.tstzrange(v.c.valid_from, v.c.valid_to, "(]").op("@>")(at)
        else:
            valid_at = and_(v.c.valid_from < at, or_(v.c.valid_to.is_(None), v.c.valid_to >= at))
        query = select(*columns, func.count().label("count")).where(
            v.c.message_type == message_type, valid_at, v.c.deleted.is_(False)
        )
        if status is not None:
            query = query.where(v.c.state["tjenesteStatus"].as_string() == status)
        if unit is not None:
            query = query.where(v.c.unit == unit)
        if columns:
            query = query.group_by(*columns).order_by(*columns)
        async with self._engines.reader.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def integrity_findings_for(self, event_ids: Sequence[str]) -> dict[str, list[Any]]:
        """Integrity findings by event id, as (rule id, params) pairs."""
        found: dict[str, list[Any]] = {}
        async with self._engines.reader.connect() as conn:
            for chunk in _chunks(list(event_ids), 500):
                rows = await conn.execute(
                    select(integrity_findings).where(integrity_findings.c.event_id.in_(chunk))
                )
                for r in rows:
                    found.setdefault(r.event_id, []).append((r.rule_id, r.params))
        return found

    async def count_events(self) -> int:
        async with self._engines.reader.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


def _by_unit_and_type(keys: Iterable[ObjectKey]) -> Iterable[tuple[tuple[str, str], list[str]]]:
    """Keys grouped by (unit, message type), in chunks: ``unit = ? AND message_type = ? AND
    object_id IN (...)`` uses the whole (unit, message_type, object_id) index, where a row-value
    IN list over all three makes PostgreSQL scan the unit's rows."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for unit, message_type, object_id in sorted(keys):
        grouped.setdefault((unit, message_type), []).append(object_id)
    for group, object_ids in grouped.items():
        for chunk in _chunks(object_ids, 500):
            yield group, chunk


def _event_row(sourced: SourcedEvent, now: datetime) -> dict[str, Any]:
    e = sourced.event
    return {
        "event_id": e.event_id,
        "unit": e.unit,
        "message_type": e.message_type,
        "version": e.version,
        "object_id": e.object_id,
        "action": e.action,
        "valid_time": e.valid_time,
        "recorded_time": e.recorded_time,
        "clinical_time": e.clinical_time,
        "receipt_id": e.receipt_id,
        "item_index": e.item_index,
        "context": e.context,
        "payload": e.payload,
        "source_topic": sourced.topic,
        "source_partition": sourced.partition,
        "source_offset": sourced.offset,
        "applied_at": now,
    }


def _chunks(items: Iterable[_T], size: int) -> Iterable[list[_T]]:
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
