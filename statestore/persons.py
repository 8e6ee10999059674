"""Persons in the store, by pseudonym: where each is registered (``person_objects``, kept by the
projector in the same transaction as the events) and who read their data (``person_reads``,
append-only). Both hold pseudonyms only, never a person number (docs/privacy.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import case, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from statestore.dialect import insert_for
from statestore.engine import StoreEngines
from statestore.tables import person_objects, person_reads

# A pseudonym as identity/pseudonyms.py makes them: key id, dash, 32 hex digits.
PSEUDONYM = re.compile(r"p[0-9]{1,8}-[0-9a-f]{32}")
_PSEUDONYM_BYTES = re.compile(rb"\"(p[0-9]{1,8}-[0-9a-f]{32})\"")


def pseudonyms_in(value: Any) -> set[str]:
    """The pseudonyms a JSON value (an event's payload, a state) holds as string values."""
    return {m.decode() for m in _PSEUDONYM_BYTES.findall(orjson.dumps(value))}


@dataclass(frozen=True, slots=True)
class PersonMention:
    """An event naming a person: the object, its clinical time and when it was recorded."""

    pseudonym: str
    unit: str
    message_type: str
    object_id: str
    clinical_time: str | None
    recorded: datetime


async def index_mentions(
    conn: AsyncConnection, dialect: str, mentions: Sequence[PersonMention]
) -> None:
    """Record, inside the caller's transaction, which objects name which persons, widening each
    row's spans of clinical and recorded time."""
    if not mentions:
        return
    merged: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for m in mentions:
        key = (m.pseudonym, m.unit, m.message_type, m.object_id)
        row = merged.setdefault(
            key,
            {
                "pseudonym": m.pseudonym,
                "unit": m.unit,
                "message_type": m.message_type,
                "object_id": m.object_id,
                "clinical_from": m.clinical_time,
                "clinical_to": m.clinical_time,
                "first_recorded": m.recorded,
                "last_recorded": m.recorded,
            },
        )
        if m.clinical_time is not None:
            row["clinical_from"] = min(filter(None, [row["clinical_from"], m.clinical_time]))
            row["clinical_to"] = max(filter(None, [row["clinical_to"], m.clinical_time]))
        row["first_recorded"] = min(row["first_recorded"], m.recorded)
        row["last_recorded"] = max(row["last_recorded"], m.recorded)
    t = person_objects
    stmt = insert_for(dialect, t)
    new = stmt.excluded
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["pseudonym", "unit", "message_type", "object_id"],
            set_={
                "clinical_from": case(
                    (t.c.clinical_from.is_(None), new.clinical_from),
                    (new.clinical_from < t.c.clinical_from, new.clinical_from),
                    else_=t.c.clinical_from,
                ),
                "clinical_to": case(
                    (t.c.clinical_to.is_(None), new.clinical_to),
                    (new.clinical_to > t.c.clinical_to, new.clinical_to),
                    else_=t.c.clinical_to,
                ),
                "first_recorded": case(
                    (new.first_recorded < t.c.first_recorded, new.first_recorded),
                    else_=t.c.first_recorded,
                ),
                "last_recorded": case(
                    (new.last_recorded > t.c.last_recorded, new.last_recorded),
                    else_=t.c.last_recorded,
                ),
            },
        ),
        list(merged.values()),
    )


@dataclass(frozen=True, slots=True)
class Registration:
    unit: str
    message_type: str
    object_id: str
    clinical_from: str | None
    clinical_to: str | None
    first_recorded: datetime
    last_recorded: datetime


@dataclass(frozen=True, slots=True)
class PersonRead:
    """One read of person-level data. ``actor`` is a member of staff's name or subject: kept
    for the register's own audit, never shown to the citizen (who sees organisation and
    scope)."""

    actor: str | None
    organisation: str
    scope: str
    action: str
    message_type: str | None = None
    object_id: str | None = None
    pseudonym: str | None = None
    purpose: str | None = None
    at: datetime | None = None


class PersonRepository:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    async def registrations(self, pseudonym: str) -> list[Registration]:
        t = person_objects
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(
                    t.c.unit,
                    t.c.message_type,
                    t.c.object_id,
                    t.c.clinical_from,
                    t.c.clinical_to,
                    t.c.first_recorded,
                    t.c.last_recorded,
                )
                .where(t.c.pseudonym == pseudonym)
                .order_by(t.c.clinical_from, t.c.message_type, t.c.object_id)
            )
            return [Registration(*r) for r in rows]

    async def log_reads(self, reads: Iterable[PersonRead]) -> None:
        rows = [
            {
                "at": r.at or datetime.now(UTC),
                "actor": r.actor,
                "organisation": r.organisation,
                "scope": r.scope,
                "action": r.action,
                "message_type": r.message_type,
                "object_id": r.object_id,
                "pseudonym": r.pseudonym,
                "purpose": r.purpose,
            }
            for r in reads
        ]
        if rows:
            async with self._engines.writer.begin() as conn:
                await conn.execute(insert(person_reads), rows)

    async def reads_of(self, pseudonym: str, limit: int = 1000) -> list[PersonRead]:
        """The reads of one person's data, newest first."""
        t = person_reads
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(
                    t.c.actor,
                    t.c.organisation,
                    t.c.scope,
                    t.c.action,
                    t.c.message_type,
                    t.c.object_id,
                    t.c.pseudonym,
                    t.c.purpose,
                    t.c.at,
                )
                .where(t.c.pseudonym == pseudonym)
                .order_by(t.c.at.desc(), t.c.id.desc())
                .limit(limit)
            )
            return [PersonRead(*r) for r in rows]
