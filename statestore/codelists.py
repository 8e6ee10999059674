"""Imported code lists, kept in the store so every gateway replica validates against the same
versions. Importing a list replaces everything stored under its id."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select

from statestore.engine import StoreEngines
from statestore.tables import codelist_changes, codelist_states, codelists
from validators.codelists import CodeChange, CodeList, MemberState


class CodeListRepository:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    async def save(self, codelist: CodeList) -> None:
        async with self._engines.writer.begin() as conn:
            await conn.execute(
                delete(codelist_changes).where(codelist_changes.c.codelist_id == codelist.id)
            )
            await conn.execute(delete(codelists).where(codelists.c.codelist_id == codelist.id))
            await conn.execute(
                codelists.insert().values(
                    codelist_id=codelist.id,
                    title=codelist.title,
                    sample=codelist.sample,
                    source=codelist.source,
                    imported_at=datetime.now(UTC),
                )
            )
            unique = {(s.code, s.effective): s for s in codelist.states}
            if unique:
                await conn.execute(
                    codelist_states.insert(),
                    [
                        {
                            "codelist_id": codelist.id,
                            "code": s.code,
                            "effective": s.effective,
                            "active": s.active,
                            "display": s.display,
                        }
                        for s in unique.values()
                    ],
                )
            changes = {(c.old_code, c.new_code, c.changed_on) for c in codelist.changes}
            if changes:
                await conn.execute(
                    codelist_changes.insert(),
                    [
                        {"codelist_id": codelist.id, "old_code": old, "new_code": new,
                         "changed_on": on}
                        for old, new, on in sorted(changes)
                    ],
                )  # fmt: skip

    async def stamps(self) -> frozenset[tuple[str, datetime]]:
        """(id, imported at) of every stored list: a cheap read that changes with any import."""
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(select(codelists.c.codelist_id, codelists.c.imported_at))
            return frozenset((r.codelist_id, r.imported_at) for r in rows)

    async def load_all(self) -> list[CodeList]:
        async with self._engines.reader.connect() as conn:
            heads = (await conn.execute(select(codelists))).all()
            states: dict[str, list[MemberState]] = {h.codelist_id: [] for h in heads}
            for row in await conn.execute(select(codelist_states)):
                states[row.codelist_id].append(
                    MemberState(row.code, row.effective, row.active, row.display)
                )
            changes: dict[str, list[CodeChange]] = {h.codelist_id: [] for h in heads}
            for row in await conn.execute(select(codelist_changes)):
                changes[row.codelist_id].append(
                    CodeChange(row.old_code, row.new_code, row.changed_on)
                )
        return [
            CodeList(
                h.codelist_id,
                h.title,
                h.sample,
                h.source,
                states[h.codelist_id],
                changes=changes[h.codelist_id],
            )
            for h in heads
        ]
