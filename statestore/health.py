"""Whether the store can take a write now: what readiness asks of it (wiring/readiness.py).

A probe writes this process's row of ``readiness_probes`` in a transaction of its own. On SQLite
it first checks that the database file is still the one the process opened: a pooled connection
to a deleted or replaced file keeps answering, while the next process would find nothing.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from statestore.dialect import insert_for
from statestore.engine import StoreEngines
from statestore.tables import readiness_probes


class StoreFileGone(RuntimeError):
    """The embedded store's file was deleted or replaced under the running process."""


class StoreProbe:
    def __init__(self, engines: StoreEngines, instance: str, sqlite_file: Path | None) -> None:
        self._engines = engines
        self._instance = instance[:200]
        self._file = sqlite_file
        self._inode = _inode(sqlite_file) if sqlite_file is not None else None

    async def write(self) -> None:
        """Raise when the store cannot take a write: a database error, or StoreFileGone."""
        if self._file is not None and _inode(self._file) != self._inode:
            raise StoreFileGone(f"{self._file} was deleted or replaced")
        stmt = insert_for(self._engines.dialect, readiness_probes).values(
            instance=self._instance, probed_at=datetime.now(UTC)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["instance"], set_={"probed_at": stmt.excluded.probed_at}
        )
        async with self._engines.writer.begin() as conn:
            await conn.execute(stmt)


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)
