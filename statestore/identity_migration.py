"""``intake identities migrate``: pseudonymise a store written before person identifiers were
(docs/privacy.md), in place.

Event payloads, object states and their versions get pseudonyms in place of the numbers (each
number sealed into the vault first), the person index is filled from the events, and review items
kept as sent are masked and sealed. It works in batches, each its own transaction, walking each
table in key order; a value that is a pseudonym already is left as it is, so an interrupted run
is simply started again, and a finished one changes nothing when run again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Table, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.pseudonyms import Pseudonymiser, VaultEntry
from schemas.catalogue import Catalogue
from statestore.engine import StoreEngines
from statestore.persons import PersonMention, index_mentions, pseudonyms_in
from statestore.tables import events, object_versions, objects, review_items
from statestore.vault import VaultRepository

Progress = Callable[[str, int, int], None]  # table, rows read so far, rows changed so far


@dataclass
class MigrationReport:
    read: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)


class IdentityMigration:
    def __init__(
        self,
        engines: StoreEngines,
        identities: Pseudonymiser,
        catalogue: Catalogue,
        *,
        batch: int = 500,
        progress: Progress | None = None,
    ) -> None:
        self._engines = engines
        self._identities = identities
        self._catalogue = catalogue
        self._vault = VaultRepository(engines)
        self._batch = batch
        self._progress = progress or (lambda table, read, changed: None)

    async def run(self) -> MigrationReport:
        report = MigrationReport()
        for table, key, column in (
            (events, [events.c.seq], "payload"),
            (
                objects,
                [objects.c.unit, objects.c.message_type, objects.c.object_id],
                "state",
            ),
            (
                object_versions,
                [
                    object_versions.c.unit,
                    object_versions.c.message_type,
                    object_versions.c.object_id,
                    object_versions.c.valid_from,
                ],
                "state",
            ),
        ):
            await self._states(table, key, column, report)
        await self._review_items(report)
        return report

    async def _states(
        self, table: Table, key: Sequence[Any], column: str, report: MigrationReport
    ) -> None:
        """Pseudonymise the JSON ``column`` of every row of ``table``, walking it by ``key``."""
        extra = [table.c.unit, table.c.object_id, table.c.clinical_time] if table is events else []
        if table is events:
            extra.append(table.c.recorded_time)
        name = table.name
        last: tuple[Any, ...] | None = None
        read = changed = 0
        while True:
            query = select(*key, table.c.message_type, table.c[column], *extra)
            if last is not None:
                query = query.where(tuple_(*key) > tuple_(*last))
            query = query.order_by(*key).limit(self._batch)
            async with self._engines.writer.begin() as conn:
                rows = (await conn.execute(query)).all()
                if not rows:
                    break
                sealed: list[VaultEntry] = []
                updates: list[tuple[tuple[Any, ...], Any]] = []
                mentions: list[PersonMention] = []
                for row in rows:
                    row_key = tuple(row[: len(key)])
                    message_type, value = row[len(key)], row[len(key) + 1]
                    new, entries = self._pseudonymise(message_type, value)
                    if entries:
                        sealed += entries
                        updates.append((row_key, new))
                    if table is events and new is not None:
                        unit, object_id, clinical, recorded = row[len(key) + 2 :]
                        mentions += [
                            PersonMention(p, unit, message_type, object_id, clinical, recorded)
                            for p in pseudonyms_in(new)
                        ]
                await self._store(conn, sealed)
                for row_key, new in updates:
                    condition = [c == v for c, v in zip(key, row_key, strict=True)]
                    await conn.execute(update(table).where(*condition).values({column: new}))
                if mentions:
                    await index_mentions(conn, self._engines.dialect, mentions)
            last = tuple(rows[-1][: len(key)])
            read += len(rows)
            changed += len(updates)
            self._progress(name, read, changed)
        report.read[name], report.changed[name] = read, changed

    def _pseudonymise(self, message_type: str, value: Any) -> tuple[Any, list[VaultEntry]]:
        if not isinstance(value, dict):
            return value, []
        models = [m for m in self._catalogue if m.message_type == message_type]
        entries: list[VaultEntry] = []
        for model in models:  # the identifier fields of every version of the type
            value, found = self._identities.stored(model, value)
            entries += found
        return value, entries

    async def _store(self, conn: AsyncConnection, entries: list[VaultEntry]) -> None:
        """The vault rows, in the batch's own transaction (so a row never names a pseudonym
        the vault lacks)."""
        await self._vault.store_in(conn, entries)

    async def _review_items(self, report: MigrationReport) -> None:
        """Review items kept as sent (before the sealed copy): mask them, seal them."""
        t = review_items
        last: str | None = None
        read = changed = 0
        while True:
            query = select(
                t.c.item_id,
                t.c.receipt_id,
                t.c.item_index,
                t.c.path,
                t.c.message_type,
                t.c.version,
                t.c.item_json,
                t.c.block_json,
                t.c.sealed,
            )
            if last is not None:
                query = query.where(t.c.item_id > last)
            query = query.order_by(t.c.item_id).limit(self._batch)
            async with self._engines.writer.begin() as conn:
                rows = (await conn.execute(query)).all()
                if not rows:
                    break
                for r in rows:
                    model = self._catalogue.get(r.message_type, r.version)
                    if r.sealed is not None or model is None:
                        continue
                    item_json = orjson.dumps(r.item_json).decode()
                    block_json = orjson.dumps(r.block_json).decode()
                    await conn.execute(
                        update(t)
                        .where(t.c.item_id == r.item_id)
                        .values(
                            item_json=self._identities.masked(model, r.item_json, r.path),
                            block_json=self._identities.masked(model, r.block_json, None),
                            sealed=self._identities.seal_as_sent(
                                r.receipt_id, r.item_index, item_json, block_json
                            ),
                        )
                    )
                    changed += 1
            last = rows[-1].item_id
            read += len(rows)
            self._progress(t.name, read, changed)
        report.read[t.name], report.changed[t.name] = read, changed
