"""The directory of reporting units: who a bare organisation number is (name, municipality,
industry, main unit), from Enhetsregisteret's bulk files (:mod:`statestore.enhetsregisteret`).

An import replaces the units of the kinds it holds, in one transaction: a unit deleted from the
register leaves the directory with the next import; a file refused leaves it as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, func, select

from statestore.bulk import chunks
from statestore.engine import StoreEngines
from statestore.enhetsregisteret import Unit
from statestore.tables import reporting_units


class UnitDirectory:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    async def replace(self, units: Sequence[Unit]) -> int:
        """Store ``units`` in place of every stored unit of the kinds among them."""
        t = reporting_units
        now = datetime.now(UTC)
        kinds = sorted({u.kind for u in units})
        unique = {u.orgnr: u for u in units}
        async with self._engines.writer.begin() as conn:
            if kinds:
                await conn.execute(delete(t).where(t.c.kind.in_(kinds)))
            for chunk in chunks(list(unique.values()), 1000):
                await conn.execute(
                    t.insert(),
                    [
                        {
                            "orgnr": u.orgnr,
                            "name": u.name,
                            "kind": u.kind,
                            "parent_orgnr": u.parent_orgnr,
                            "kommune_nr": u.kommune_nr,
                            "industry_code": u.industry_code,
                            "industry_text": u.industry_text,
                            "organisation_form": u.organisation_form,
                            "imported_at": now,
                        }
                        for u in chunk
                    ],
                )
        return len(unique)

    async def get_many(self, orgnrs: Iterable[str]) -> dict[str, Unit]:
        t = reporting_units
        wanted = sorted(set(orgnrs))
        out: dict[str, Unit] = {}
        async with self._engines.reader.connect() as conn:
            for chunk in chunks(wanted, 500):
                for r in await conn.execute(select(t).where(t.c.orgnr.in_(chunk))):
                    out[r.orgnr] = Unit(
                        r.orgnr,
                        r.name,
                        r.kind,
                        r.parent_orgnr,
                        r.kommune_nr,
                        r.industry_code,
                        r.industry_text,
                        r.organisation_form,
                    )
        return out

    async def names(self, orgnrs: Iterable[str]) -> dict[str, str]:
        return {orgnr: unit.name for orgnr, unit in (await self.get_many(orgnrs)).items()}

    async def count(self) -> int:
        async with self._engines.reader.connect() as conn:
            found = await conn.execute(select(func.count()).select_from(reporting_units))
            return int(found.scalar_one())
