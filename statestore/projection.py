"""Applying events to history and last-known state, with the consumer's offsets in the same
transaction: a crash before the commit replays the batch, a crash after it skips the batch, and
either way every event is applied exactly once.

A batch, in one transaction:

1. insert its events; the insert names the ones that are new (a duplicate changes nothing);
2. read the stored history of the objects the new events touch, in one query for the batch
   (an object with no stored history is new: nothing to read, nothing to replace);
3. fold each touched object's whole history with its message type's fold;
4. write its last-known state, and replace the versions and integrity findings that changed.
   A fold is a left fold (the step for an event depends only on the events before it), so when
   every new event sorts after the object's stored ones, as they do when events arrive in order,
   the versions before the last stored valid time and the stored events' findings stay as they
   are: only the versions from that valid time on are rewritten and the new events' findings
   added. A late event that sorts before a stored one rewrites all of the object's versions and
   findings.

On PostgreSQL each of these is one statement over all the rows (one JSON document), so a batch
costs a fixed handful of round trips and no per-row work in SQLAlchemy; on SQLite, in process,
the same steps use SQLAlchemy Core.

Where the pieces are: the history and fold types in :mod:`statestore.history`, what a batch
writes (step 4) in :mod:`statestore.write_plan`, the statements per database in
:mod:`statestore.projection_sql`; this module runs them in one transaction and answers the state
queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from eventlog.port import TopicPartition
from schemas.events import Event
from statestore.bulk import chunks
from statestore.engine import StoreEngines
from statestore.feed import ChangeKind, append_changes
from statestore.history import Fold, FoldResult, HistoryEntry, ObjectKey
from statestore.offsets import load_offsets, store_offsets
from statestore.persons import PersonMention, index_mentions, pseudonyms_in
from statestore.projection_sql import (
    FOLD_ORDER,
    HISTORY_COLUMNS,
    CoreStatements,
    PostgresStatements,
    Statements,
    entry_of,
)
from statestore.tables import (
    events,
    integrity_findings,
    object_versions,
    objects,
)
from statestore.write_plan import WritePlan


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


class StateRepository:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines
        self._statements: Statements = (
            PostgresStatements()
            if engines.dialect == "postgresql"
            else CoreStatements(engines.dialect)
        )

    async def load_offsets(self, consumer: str) -> dict[TopicPartition, int]:
        async with self._engines.reader.connect() as conn:
            return await load_offsets(conn, consumer)

    async def advance_offsets(
        self, consumer: str, next_offsets: Mapping[TopicPartition, int]
    ) -> None:
        """Move the consumer's offsets forward where the log skipped records it never returns
        (Kafka's transaction markers, aborted records): see ``LogConsumer.positions``."""
        async with self._engines.writer.begin() as conn:
            await store_offsets(
                conn, self._engines.dialect, consumer, next_offsets, forward_only=True
            )

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
        statements = self._statements
        changes = WritePlan()
        async with self._engines.writer.begin() as conn:
            unique: dict[str, SourcedEvent] = {}
            for sourced in batch:
                unique.setdefault(sourced.event.event_id, sourced)
            inserted: set[str] = set()
            if unique:
                inserted = await statements.insert_events(
                    conn, [_event_row(s, now) for s in unique.values()]
                )
            if inserted:
                new: dict[ObjectKey, list[HistoryEntry]] = {}
                for event_id in inserted:
                    e = unique[event_id].event
                    new.setdefault((e.unit, e.message_type, e.object_id), []).append(_new_entry(e))
                stored = await statements.stored_histories(conn, new.keys(), inserted)
                for key in sorted(new):
                    changes.add(key, stored.get(key, ()), new[key], folds[key[1]], now)
                await statements.write(conn, changes)
                flagged = {event_id for event_id, _, _ in changes.new_findings}
                changed: dict[str, tuple[str, str, ChangeKind]] = {}
                for event_id in inserted:
                    e = unique[event_id].event
                    kind: ChangeKind = "integrity" if event_id in flagged else "applied"
                    if changed.get(e.receipt_id, ("", "", "applied"))[2] != "integrity":
                        changed[e.receipt_id] = (e.unit, e.receipt_id, kind)
                await append_changes(conn, sorted(changed.values()))
                await index_mentions(
                    conn,
                    self._engines.dialect,
                    [
                        PersonMention(
                            pseudonym,
                            e.unit,
                            e.message_type,
                            e.object_id,
                            e.clinical_time,
                            e.recorded_time,
                        )
                        for e in (unique[event_id].event for event_id in inserted)
                        for pseudonym in pseudonyms_in(e.payload)
                    ],
                )
            await store_offsets(conn, self._engines.dialect, consumer, next_offsets)
        return ApplyResult(
            applied_event_ids=frozenset(inserted),
            duplicates=len(batch) - len(inserted),
            violations=tuple((mt, rule) for _, mt, rule in changes.new_findings),
        )

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
        query = select(*HISTORY_COLUMNS).where(
            events.c.unit == unit,
            events.c.message_type == message_type,
            events.c.object_id == object_id,
        )
        if valid_before is not None:
            query = query.where(events.c.valid_time < valid_before)
        if known_at is not None:
            query = query.where(events.c.recorded_time <= known_at)
        async with self._engines.reader.connect() as conn:
            history = [entry_of(r) for r in await conn.execute(query.order_by(*FOLD_ORDER))]
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
            for chunk in chunks(list(event_ids), 500):
                rows = await conn.execute(
                    select(integrity_findings).where(integrity_findings.c.event_id.in_(chunk))
                )
                for r in rows:
                    found.setdefault(r.event_id, []).append((r.rule_id, r.params))
        return found

    async def count_events(self) -> int:
        async with self._engines.reader.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored")
    return value.astimezone(UTC)


def _new_entry(e: Event) -> HistoryEntry:
    """A new event as its object's history holds it once stored (times in UTC)."""
    return HistoryEntry(
        e.event_id,
        e.version,
        e.action,
        _aware_utc(e.valid_time),
        _aware_utc(e.recorded_time),
        e.payload,
        e.item_index,
        e.context,
        e.clinical_time,
    )


def _event_row(sourced: SourcedEvent, now: datetime) -> tuple[Any, ...]:
    """An ``events`` row in ``EVENT_COLUMNS`` order."""
    e = sourced.event
    return (
        e.event_id,
        e.unit,
        e.message_type,
        e.version,
        e.object_id,
        e.action,
        _aware_utc(e.valid_time),
        _aware_utc(e.recorded_time),
        e.clinical_time,
        e.receipt_id,
        e.item_index,
        e.context,
        e.payload,
        sourced.topic,
        sourced.partition,
        sourced.offset,
        now,
    )
