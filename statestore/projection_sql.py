"""The statements the projector runs, one implementation per kind of database: SQLAlchemy Core
on every dialect (SQLite uses it), and on PostgreSQL one statement over all of a batch's rows.
What they write is a :class:`statestore.write_plan.WritePlan`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Protocol

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from statestore.bulk import JsonRowsInsert, chunks
from statestore.dialect import insert_for
from statestore.history import HistoryEntry, ObjectKey
from statestore.tables import events, integrity_findings, object_versions, objects
from statestore.write_plan import WritePlan

HISTORY_COLUMNS = (
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
FOLD_ORDER = (events.c.valid_time, events.c.recorded_time, events.c.item_index, events.c.event_id)

# Rows travel as tuples in these column orders (the tables' own orders, less generated keys).
EVENT_COLUMNS = tuple(c.name for c in events.c if c.name != "seq")
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


def entry_of(row: Any) -> HistoryEntry:
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


class Statements(Protocol):
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

    async def write(self, conn: AsyncConnection, changes: WritePlan) -> None:
        """Upsert the objects, replace their versions and findings as ``changes`` says."""


class CoreStatements:
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
        result = await conn.execute(stmt, [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in rows])
        return {r[0] for r in result}

    async def stored_histories(
        self, conn: AsyncConnection, keys: Collection[ObjectKey], leave_out: Collection[str]
    ) -> dict[ObjectKey, list[HistoryEntry]]:
        histories: dict[ObjectKey, list[HistoryEntry]] = {}
        for (unit, message_type), object_ids in by_unit_and_type(keys):
            result = await conn.execute(
                select(*HISTORY_COLUMNS).where(
                    events.c.unit == unit,
                    events.c.message_type == message_type,
                    events.c.object_id.in_(object_ids),
                )
            )
            for r in result:
                if r.event_id not in leave_out:
                    histories.setdefault((r.unit, r.message_type, r.object_id), []).append(
                        entry_of(r)
                    )
        return histories

    async def write(self, conn: AsyncConnection, changes: WritePlan) -> None:
        for table in (object_versions, integrity_findings):
            for (unit, message_type), object_ids in by_unit_and_type(changes.rewritten):
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


class PostgresStatements:
    """PostgreSQL: each step is one statement with every row in one JSON parameter
    (:class:`JsonRowsInsert`), run on the driver without SQLAlchemy's per-row work."""

    _INSERT_EVENTS = JsonRowsInsert.of(
        events, EVENT_COLUMNS, "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
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
        f"SELECT {', '.join(f'e.{c.name}' for c in HISTORY_COLUMNS)} FROM {_KEYS} "  # noqa: S608
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
            histories.setdefault((r.unit, r.message_type, r.object_id), []).append(entry_of(r))
        return histories

    async def write(self, conn: AsyncConnection, changes: WritePlan) -> None:
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


def by_unit_and_type(keys: Iterable[ObjectKey]) -> Iterable[tuple[tuple[str, str], list[str]]]:
    """Keys grouped by (unit, message type), in chunks: ``unit = ? AND message_type = ? AND
    object_id IN (...)`` uses the whole (unit, message_type, object_id) index, where a row-value
    IN list over all three makes PostgreSQL scan the unit's rows."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for unit, message_type, object_id in sorted(keys):
        grouped.setdefault((unit, message_type), []).append(object_id)
    for group, object_ids in grouped.items():
        for chunk in chunks(object_ids, 500):
            yield group, chunk
