"""``intake identities migrate``: pseudonymise a store written before person identifiers were
(docs/privacy.md), in place.

Event payloads, object states and their versions get pseudonyms in place of the numbers (each
number sealed into the vault first), the person index is filled from the events, and review items
kept as sent are masked and sealed. It works in batches, each its own transaction, walking each
table in key order; a value that is a pseudonym already is left as it is, so an interrupted run
is simply started again, and a finished one changes nothing when run again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Table, select, tuple_, update

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

    async def run_on_embedded_log(self, path: Path, report: MigrationReport) -> None:
        """The embedded log's copy too: accepted events get pseudonyms, quarantined items are
        masked and sealed, record by record in place (offsets, keys and headers unchanged).
        A Kafka topic cannot be rewritten: docs/privacy.md says what to do with one."""
        codecs = self._catalogue.codecs
        quarantine = self._catalogue.quarantine_codec
        db = sqlite3.connect(path, check_same_thread=False)
        try:
            read = changed = 0
            last: tuple[Any, ...] = ("", -1, -1)
            while True:
                rows = await asyncio.to_thread(_log_batch, db, last, self._batch)
                if not rows:
                    break
                sealed: list[VaultEntry] = []
                updates: list[tuple[bytes, str, int, int]] = []
                for topic, partition, offset, value in rows:
                    new = self._log_value(codecs, quarantine, bytes(value), sealed)
                    if new is not None:
                        updates.append((new, topic, partition, offset))
                await self._vault.store(sealed)  # before the log names the pseudonyms
                await asyncio.to_thread(_rewrite_records, db, updates)
                last = tuple(rows[-1][:3])
                read += len(rows)
                changed += len(updates)
                self._progress("event log", read, changed)
            report.read["event log"], report.changed["event log"] = read, changed
        finally:
            db.close()

    def _log_value(
        self, codecs: Any, quarantine: Any, value: bytes, sealed: list[VaultEntry]
    ) -> bytes | None:
        """A log record's value rewritten, or None when it needs nothing (or is not ours)."""
        try:
            datum = codecs.decode(value)
        except ValueError:
            return None  # not single-object Avro of ours: poison is passed over
        if value[2:10] == quarantine.fingerprint or value[:10] in quarantine.earlier:
            if datum.get("sealed"):
                return None
            model = self._catalogue.get(datum["message_type"], datum["version"])
            if model is None:
                return None
            item, block = orjson.loads(datum["item_json"]), orjson.loads(datum["block_json"])
            datum["sealed"] = self._identities.seal_as_sent(
                datum["receipt_id"], datum["item_index"], datum["item_json"], datum["block_json"]
            )
            datum["item_json"] = orjson.dumps(
                self._identities.masked(model, item, datum["path"])
            ).decode()
            datum["block_json"] = orjson.dumps(self._identities.masked(model, block, None)).decode()
            return bytes(quarantine.encode(datum))
        payload = datum.get("payload")
        if not (isinstance(payload, tuple) and isinstance(payload[1], dict)):
            return None
        model = self._catalogue.get(datum.get("message_type", ""), datum.get("version", 0))
        if model is None:
            return None
        new, entries = self._identities.stored(model, payload[1])
        if not entries:
            return None
        sealed += entries
        datum["payload"] = (payload[0], new)
        return bytes(model.event_codec.encode(datum))

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
                # In the batch's own transaction: a row never names a pseudonym the vault lacks.
                await self._vault.store_in(conn, sealed)
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


def compact_embedded(paths: Sequence[Path]) -> None:
    """Rewrite SQLite files whole (VACUUM) and empty their write-ahead logs, so that no page
    with the old plaintext survives in free space or in the WAL. Needs the processes stopped."""
    for path in paths:
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()


def _log_batch(db: sqlite3.Connection, after: tuple[Any, ...], limit: int) -> list[Any]:
    return db.execute(
        'SELECT topic, partition, "offset", value FROM records'
        ' WHERE (topic, partition, "offset") > (?, ?, ?)'
        ' ORDER BY topic, partition, "offset" LIMIT ?',
        (*after, limit),
    ).fetchall()


def _rewrite_records(db: sqlite3.Connection, updates: list[tuple[bytes, str, int, int]]) -> None:
    with db:
        db.executemany(
            'UPDATE records SET value = ? WHERE topic = ? AND partition = ? AND "offset" = ?',
            updates,
        )
