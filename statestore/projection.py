"""Applying events to history and last-known state, with the consumer's offsets in the same
transaction: a crash before the commit replays the batch, a crash after it skips the batch, and
either way every event is applied exactly once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from eventlog.port import TopicPartition
from schemas.events import Event
from statestore.dialect import insert_for
from statestore.engine import StoreEngines
from statestore.tables import consumer_offsets, events, objects

_T = TypeVar("_T")
ObjectKey = tuple[str, str, str]  # unit, message type, object id


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    event_id: str
    version: int
    action: str
    valid_time: datetime
    recorded_time: datetime
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FoldedState:
    state: dict[str, Any] | None
    deleted: bool
    version: int
    last_event_id: str
    valid_time: datetime
    event_count: int


# A pure function from an object's history, in fold order, to its last-known state.
Fold = Callable[[Sequence[HistoryEntry]], FoldedState]


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
    updated_at: datetime


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
        """Append new events, re-fold the objects they touch with their message type's fold,
        and store the consumer's next offsets, all in one transaction."""
        now = datetime.now(UTC)
        dialect = self._engines.dialect
        async with self._engines.writer.begin() as conn:
            # In arrival order: the history's sequence number breaks ties in the fold.
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
                await self._refold(conn, touched, folds, now)
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
            applied_event_ids=frozenset(inserted), duplicates=len(batch) - len(inserted)
        )

    async def _refold(
        self,
        conn: AsyncConnection,
        keys: set[ObjectKey],
        folds: Mapping[str, Fold],
        now: datetime,
    ) -> None:
        histories: dict[ObjectKey, list[HistoryEntry]] = {k: [] for k in keys}
        for chunk in _chunks(sorted(keys), 300):
            result = await conn.execute(
                select(
                    events.c.unit,
                    events.c.message_type,
                    events.c.object_id,
                    events.c.event_id,
                    events.c.version,
                    events.c.action,
                    events.c.valid_time,
                    events.c.recorded_time,
                    events.c.payload,
                )
                .where(tuple_(events.c.unit, events.c.message_type, events.c.object_id).in_(chunk))
                .order_by(events.c.valid_time, events.c.recorded_time, events.c.seq)
            )
            for r in result:
                histories[(r.unit, r.message_type, r.object_id)].append(
                    HistoryEntry(
                        r.event_id, r.version, r.action, r.valid_time, r.recorded_time, r.payload
                    )
                )
        rows = []
        for (unit, message_type, object_id), history in histories.items():
            folded = folds[message_type](history)
            rows.append(
                {
                    "unit": unit,
                    "message_type": message_type,
                    "object_id": object_id,
                    "version": folded.version,
                    "state": folded.state,
                    "deleted": folded.deleted,
                    "event_count": folded.event_count,
                    "last_event_id": folded.last_event_id,
                    "valid_time": folded.valid_time,
                    "updated_at": now,
                }
            )
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
                    )
                },
            ),
            rows,
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
        )

    async def count_events(self) -> int:
        async with self._engines.reader.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


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
