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
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    String,
    Table,
    TypeDecorator,
    and_,
    delete,
    func,
    or_,
    select,
)
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


# A pure left fold from an object's history, in fold order, to its states and findings: the
# step for an event depends only on the events before it.
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

# Rows travel as tuples in these column orders (the tables' own orders, less generated keys).
_EVENT_COLUMNS = tuple(c.name for c in events.c if c.name != "seq")
_OBJECT_COLUMNS = tuple(c.name for c in objects.c)
_VERSION_COLUMNS = tuple(c.name for c in object_versions.c)
_FINDING_COLUMNS = tuple(c.name for c in integrity_findings.c)
_OBJECT_KEY = ("unit", "message_type", "object_id")
_VERSION_KEY = (*_OBJECT_KEY, "valid_from")


# The keys of a batch's objects as a table, from three array parameters.
_KEYS = "unnest($1::text[], $2::text[], $3::text[]) AS k(unit, message_type, object_id)"


def _delete_objects(table: Table) -> str:
    """Deletes the rows of ``table`` that belong to the objects in ``_KEYS``."""
    return (
        f"DELETE FROM {table.name} AS t USING {_KEYS} "  # noqa: S608
        "WHERE t.unit = k.unit AND t.message_type = k.message_type AND t.object_id = k.object_id"
    )


def _upsert(columns: Sequence[str], key: Sequence[str]) -> str:
    """The ON CONFLICT clause that overwrites a stored row with the same ``key``."""
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"


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


def _versions(key: ObjectKey, result: FoldResult, since: datetime | None) -> list[tuple[Any, ...]]:
    """Intervals of valid time, as ``object_versions`` rows: each version lasts until the next
    one with a later valid time (events with the same valid time collapse into the last of
    them). Only the versions from ``since`` on, when given."""
    by_start: dict[datetime, FoldStep] = {}
    for step in result.steps:
        by_start[step.entry.valid_time] = step
    starts = sorted(by_start)
    rows = []
    for i, start in enumerate(starts):
        if since is not None and start < since:
            continue
        step = by_start[start]
        rows.append(
            (
                *key,
                start,
                starts[i + 1] if i + 1 < len(starts) else None,
                step.state,
                step.deleted,
                step.entry.context,
                step.entry.clinical_time,
                step.entry.event_id,
            )
        )
    return rows


@dataclass(slots=True)
class _Changes:
    """What a batch writes besides its events, as rows in the ``_*_COLUMNS`` orders."""

    # Objects a late event re-folds: their stored versions and findings are removed first.
    rewritten: list[ObjectKey] = field(default_factory=list)
    objects: list[tuple[Any, ...]] = field(default_factory=list)
    # Upserted by (object, valid_from): a version that is stored already is overwritten.
    versions: list[tuple[Any, ...]] = field(default_factory=list)
    findings: list[tuple[Any, ...]] = field(default_factory=list)
    # Integrity findings on the batch's new events, as (event id, message type, rule id).
    new_findings: list[tuple[str, str, str]] = field(default_factory=list)

    def add(
        self,
        key: ObjectKey,
        stored: Sequence[HistoryEntry],
        new: Sequence[HistoryEntry],
        fold: Fold,
        now: datetime,
    ) -> None:
        """Re-fold one object from its stored history and its new events."""
        stored = sorted(stored, key=fold_order)
        new = sorted(new, key=fold_order)
        appended = not stored or fold_order(new[0]) > fold_order(stored[-1])
        history = [*stored, *new] if appended else sorted([*stored, *new], key=fold_order)
        result = fold(history)
        last = result.last
        self.objects.append(
            (
                *key,
                last.entry.version,
                last.state,
                last.deleted,
                len(history),
                last.entry.event_id,
                last.entry.valid_time,
                now,
                last.entry.context,
                last.entry.clinical_time,
            )
        )
        # Appended after stored events, only the versions from the last stored valid time on
        # change: that version's end, or its state when a new event shares its valid time.
        since = stored[-1].valid_time if stored and appended else None
        if stored and not appended:
            self.rewritten.append(key)
        self.versions += _versions(key, result, since)
        new_ids = {e.event_id for e in new}
        for v in result.violations:
            if since is None or v.event_id in new_ids:
                self.findings.append((v.event_id, v.rule_id, *key, v.params))
            if v.event_id in new_ids:
                self.new_findings.append((v.event_id, key[1], v.rule_id))


class _Statements(Protocol):
    """The statements ``apply`` runs, one implementation per kind of database."""

    async def insert_events(
        self, conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]
    ) -> set[str]:
        """Insert events that are not stored yet; returns the ids of those inserted."""

    async def stored_histories(
        self, conn: AsyncConnection, keys: Collection[ObjectKey], leave_out: Collection[str]
    ) -> dict[ObjectKey, list[HistoryEntry]]:
        """The stored histories of ``keys``, without the events ``leave_out``; objects with no
        other events are left out."""

    async def write(self, conn: AsyncConnection, changes: _Changes) -> None:
        """Upsert the objects, replace their versions and findings as ``changes`` says."""


def _pg_type(column: Column[Any]) -> str:
    """The PostgreSQL type a column's values are read as from the JSON rows. Strings are read
    as text, so that the insert's own cast checks their length (an explicit cast to varchar(n)
    would cut them short instead)."""
    kind = column.type.impl if isinstance(column.type, TypeDecorator) else column.type
    for python_type, name in (
        (String, "text"),
        (JSON, "jsonb"),
        (BigInteger, "bigint"),
        (Integer, "integer"),
        (Boolean, "boolean"),
        (DateTime, "timestamptz"),
    ):
        if isinstance(kind, python_type):
            return name
    raise TypeError(f"no PostgreSQL type for {column}")


@dataclass(frozen=True, slots=True)
class JsonRowsInsert:
    """``INSERT INTO table (columns) SELECT ... FROM jsonb_array_elements($1::jsonb)``: every row
    one JSON array in a single document that orjson writes; one statement for any number of
    rows, run on the driver without SQLAlchemy's per-row work. PostgreSQL only; the projector's
    writes and the gateway's receipt items use it.

    It replaced one array parameter per column (``unnest``), which asyncpg encodes element by
    element: for 500 receipt items 0.17 ms of client CPU instead of 1.2 ms and half the
    statement's time; the projector benchmark ran 2.02–2.13 s instead of 2.27–2.89 s (see
    bench/RESULTS.md). A JSON null is SQL NULL in a plain column and JSON ``null`` in a JSON one.
    """

    sql: str

    @classmethod
    def of(cls, table: Table, columns: Sequence[str], then: str = "") -> JsonRowsInsert:
        values = []
        for i, c in enumerate(columns):
            kind = _pg_type(table.c[c])
            if kind == "jsonb":
                values.append(f"r->{i}")
            elif kind == "text":  # cast to the column's varchar(n) by the insert, which checks it
                values.append(f"r->>{i}")
            else:
                values.append(f"(r->>{i})::{kind}")
        names = ", ".join(columns)
        # Only the table's own names go into the text; the values travel as the parameter.
        sql = (
            f"INSERT INTO {table.name} ({names}) SELECT {', '.join(values)} "  # noqa: S608
            f"FROM jsonb_array_elements($1::jsonb) AS r {then}"
        )
        return cls(sql.rstrip())

    def parameters(self, rows: Sequence[tuple[Any, ...]]) -> tuple[str]:
        return (orjson.dumps(rows).decode(),)


class _CoreStatements:
    """SQLAlchemy Core: works on every dialect; SQLite uses it."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    async def insert_events(
        self, conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]
    ) -> set[str]:
        # ON CONFLICT DO NOTHING ... RETURNING names the events that are new, even when another
        # projector instance inserts the same events concurrently.
        stmt = (
            insert_for(self._dialect, events)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(events.c.event_id)
        )
        result = await conn.execute(stmt, [dict(zip(_EVENT_COLUMNS, r, strict=True)) for r in rows])
        return {r[0] for r in result}

    async def stored_histories(
        self, conn: AsyncConnection, keys: Collection[ObjectKey], leave_out: Collection[str]
    ) -> dict[ObjectKey, list[HistoryEntry]]:
        histories: dict[ObjectKey, list[HistoryEntry]] = {}
        for (unit, message_type), object_ids in _by_unit_and_type(keys):
            result = await conn.execute(
                select(*_HISTORY_COLUMNS).where(
                    events.c.unit == unit,
                    events.c.message_type == message_type,
                    events.c.object_id.in_(object_ids),
                )
            )
            for r in result:
                if r.event_id not in leave_out:
                    histories.setdefault((r.unit, r.message_type, r.object_id), []).append(
                        _entry(r)
                    )
        return histories

    async def write(self, conn: AsyncConnection, changes: _Changes) -> None:
        for table in (object_versions, integrity_findings):
            for (unit, message_type), object_ids in _by_unit_and_type(changes.rewritten):
                await conn.execute(
                    delete(table).where(
                        table.c.unit == unit,
                        table.c.message_type == message_type,
                        table.c.object_id.in_(object_ids),
                    )
                )
        for table, columns, rows, key in (
            (objects, _OBJECT_COLUMNS, changes.objects, _OBJECT_KEY),
            (object_versions, _VERSION_COLUMNS, changes.versions, _VERSION_KEY),
        ):
            if rows:
                stmt = insert_for(self._dialect, table)
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=list(key),
                        set_={c: getattr(stmt.excluded, c) for c in columns if c not in key},
                    ),
                    [dict(zip(columns, r, strict=True)) for r in rows],
                )
        if changes.findings:
            await conn.execute(
                integrity_findings.insert(),
                [dict(zip(_FINDING_COLUMNS, r, strict=True)) for r in changes.findings],
            )


class _PostgresStatements:
    """PostgreSQL: each step is one statement with every row in one JSON parameter
    (:class:`JsonRowsInsert`), run on the driver without SQLAlchemy's per-row work."""

    _INSERT_EVENTS = JsonRowsInsert.of(
        events, _EVENT_COLUMNS, "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    )
    _UPSERT_OBJECTS = JsonRowsInsert.of(
        objects, _OBJECT_COLUMNS, _upsert(_OBJECT_COLUMNS, _OBJECT_KEY)
    )
    _UPSERT_VERSIONS = JsonRowsInsert.of(
        object_versions, _VERSION_COLUMNS, _upsert(_VERSION_COLUMNS, _VERSION_KEY)
    )
    _INSERT_FINDINGS = JsonRowsInsert.of(integrity_findings, _FINDING_COLUMNS)
    # One index scan per object (LATERAL; OFFSET 0 keeps the planner from flattening it into a
    # hash join that reads the whole table while it is small, testing every row against $4).
    _HISTORIES = (
        f"SELECT {', '.join(f'e.{c.name}' for c in _HISTORY_COLUMNS)} FROM {_KEYS} "  # noqa: S608
        "CROSS JOIN LATERAL (SELECT * FROM events WHERE events.unit = k.unit "
        "AND events.message_type = k.message_type AND events.object_id = k.object_id "
        "OFFSET 0) AS e WHERE e.event_id <> ALL($4::text[])"
    )
    _DELETE_REWRITTEN = (_delete_objects(object_versions), _delete_objects(integrity_findings))

    async def insert_events(
        self, conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]
    ) -> set[str]:
        insert = self._INSERT_EVENTS
        result = await conn.exec_driver_sql(insert.sql, insert.parameters(rows))
        return {r[0] for r in result}

    async def stored_histories(
        self, conn: AsyncConnection, keys: Collection[ObjectKey], leave_out: Collection[str]
    ) -> dict[ObjectKey, list[HistoryEntry]]:
        histories: dict[ObjectKey, list[HistoryEntry]] = {}
        if not keys:
            return histories
        result = await conn.exec_driver_sql(
            self._HISTORIES, (*(list(c) for c in zip(*keys, strict=True)), list(leave_out))
        )
        for r in result:
            histories.setdefault((r.unit, r.message_type, r.object_id), []).append(_entry(r))
        return histories

    async def write(self, conn: AsyncConnection, changes: _Changes) -> None:
        if changes.rewritten:
            keys = tuple(list(c) for c in zip(*changes.rewritten, strict=True))
            for sql in self._DELETE_REWRITTEN:
                await conn.exec_driver_sql(sql, keys)
        for statement, rows in (
            (self._UPSERT_OBJECTS, changes.objects),
            (self._UPSERT_VERSIONS, changes.versions),
            (self._INSERT_FINDINGS, changes.findings),
        ):
            if rows:
                await conn.exec_driver_sql(statement.sql, statement.parameters(rows))


class StateRepository:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines
        self._statements: _Statements = (
            _PostgresStatements()
            if engines.dialect == "postgresql"
            else _CoreStatements(engines.dialect)
        )

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
        statements = self._statements
        changes = _Changes()
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
            if next_offsets:
                stmt = insert_for(self._engines.dialect, consumer_offsets)
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
    """An ``events`` row in ``_EVENT_COLUMNS`` order."""
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


def _chunks(items: Iterable[_T], size: int) -> Iterable[list[_T]]:
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
