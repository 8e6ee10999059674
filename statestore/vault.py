"""The identity vault: each pseudonym's sealed person identifier (``identity_vault``), kept apart
from the content; the only place an identifier can be recovered from, with the keyset.

Writes come from the gateway (and replays) before a message's events are produced, so every
pseudonym in the log can be re-identified. A pseudonym's row is written once: the same person
sent again finds it (a bounded in-process memory of pseudonyms known to be stored spares the
database the repeat). Re-encryption under a new primary key rewrites rows in batches.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.keys import Keyset
from identity.pseudonyms import VaultEntry
from statestore.dialect import insert_for
from statestore.engine import StoreEngines
from statestore.tables import identity_vault

KNOWN_PSEUDONYMS = 200_000  # remembered per process (about 30 MB at most)
_ROW = (
    identity_vault.c.pseudonym,
    identity_vault.c.kind,
    identity_vault.c.key_id,
    identity_vault.c.sealed,
)


@dataclass(frozen=True, slots=True)
class VaultRow:
    pseudonym: str
    kind: str
    key_id: str
    sealed: bytes


class VaultRepository:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines
        self._known: OrderedDict[str, None] = OrderedDict()

    def knows(self, pseudonym: str) -> bool:
        """Whether this process has stored (or found) the pseudonym's row."""
        return pseudonym in self._known

    async def store(self, entries: Sequence[VaultEntry]) -> None:
        """Keep the entries whose pseudonym the vault does not hold yet."""
        fresh = {e.pseudonym: e for e in entries if e.pseudonym not in self._known}
        if not fresh:
            return
        async with self._engines.writer.begin() as conn:
            await self.store_in(conn, list(fresh.values()))
        for pseudonym in fresh:
            self._known[pseudonym] = None
        while len(self._known) > KNOWN_PSEUDONYMS:
            self._known.popitem(last=False)

    async def store_in(self, conn: AsyncConnection, entries: Sequence[VaultEntry]) -> None:
        """As :meth:`store`, inside the caller's transaction (and without the memory)."""
        if not entries:
            return
        now = datetime.now(UTC)
        stmt = insert_for(self._engines.dialect, identity_vault).on_conflict_do_nothing(
            index_elements=["pseudonym"]
        )
        rows = {
            e.pseudonym: {
                "pseudonym": e.pseudonym,
                "kind": e.kind,
                "key_id": Keyset.key_id_of(e.sealed),
                "sealed": e.sealed,
                "first_seen": now,
            }
            for e in entries
        }
        await conn.execute(stmt, list(rows.values()))

    async def get(self, pseudonym: str) -> VaultRow | None:
        async with self._engines.reader.connect() as conn:
            row = (
                await conn.execute(select(*_ROW).where(identity_vault.c.pseudonym == pseudonym))
            ).first()
        return None if row is None else VaultRow(row[0], row[1], row[2], bytes(row[3]))

    async def keys_in_use(self) -> dict[str, int]:
        """Rows per key id that sealed them."""
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(identity_vault.c.key_id, func.count()).group_by(identity_vault.c.key_id)
            )
            return {str(r[0]): int(r[1]) for r in rows}

    async def not_under(self, key_id: str, limit: int) -> list[VaultRow]:
        """Up to ``limit`` rows sealed under another key than ``key_id``."""
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(*_ROW)
                .where(identity_vault.c.key_id != key_id)
                .order_by(identity_vault.c.pseudonym)
                .limit(limit)
            )
            return [VaultRow(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    async def reseal(self, rows: Sequence[VaultRow], keyset: Keyset) -> int:
        """Seal ``rows`` again under ``keyset``'s primary key (each only if nobody changed it
        meanwhile); how many were rewritten."""
        changed = 0
        async with self._engines.writer.begin() as conn:
            for row in rows:
                digits = keyset.open(row.sealed, row.pseudonym.encode())
                sealed = keyset.seal(digits, row.pseudonym.encode())
                result = await conn.execute(
                    update(identity_vault)
                    .where(identity_vault.c.pseudonym == row.pseudonym)
                    .where(identity_vault.c.key_id == row.key_id)
                    .values(key_id=keyset.primary, sealed=sealed)
                )
                changed += result.rowcount
        return changed
