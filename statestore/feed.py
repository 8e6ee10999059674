"""The receipts' change feed: appended in the transactions that change receipts, read in pages.

Order and completeness: rows are read in (txid, seq) order and only from transactions older than
the oldest one still running (PostgreSQL's snapshot xmin). A transaction that took its sequence
number early but commits late therefore appears after everything already read, never behind a
reader's position. On SQLite writers are serialised, txid is 0 and seq alone orders the feed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from sqlalchemy import BigInteger, Text, cast, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from statestore.engine import StoreEngines
from statestore.tables import receipt_changes

ChangeKind = Literal["validated", "applied", "integrity", "replayed"]


class Position(NamedTuple):
    txid: int
    seq: int


START = Position(0, 0)


@dataclass(frozen=True, slots=True)
class Change:
    position: Position
    unit: str
    receipt_id: str
    kind: str
    changed_at: datetime


def _txid(conn: AsyncConnection) -> ColumnElement[int]:
    if conn.dialect.name == "postgresql":
        return cast(cast(func.pg_current_xact_id(), Text), BigInteger)
    return literal(0)


async def append_changes(
    conn: AsyncConnection, changes: Iterable[tuple[str, str, ChangeKind]]
) -> None:
    """Record (unit, receipt id, kind) changes inside the caller's transaction."""
    rows = [{"unit": u, "receipt_id": r, "kind": k} for u, r, k in changes]
    if not rows:
        return
    now = datetime.now(UTC)
    await conn.execute(
        receipt_changes.insert().values(txid=_txid(conn)),
        [{**row, "changed_at": now} for row in rows],
    )


class ReceiptFeed:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    async def read(self, after: Position, limit: int, unit: str | None = None) -> list[Change]:
        c = receipt_changes
        query = select(c).where(tuple_(c.c.txid, c.c.seq) > tuple_(after.txid, after.seq))
        if unit is not None:
            query = query.where(c.c.unit == unit)
        if self._engines.dialect == "postgresql":
            horizon = cast(
                cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger
            )
            query = query.where(c.c.txid < horizon)
        query = query.order_by(c.c.txid, c.c.seq).limit(limit)
        async with self._engines.reader.connect() as conn:
            return [
                Change(
                    Position(int(r.txid), int(r.seq)), r.unit, r.receipt_id, r.kind, r.changed_at
                )
                for r in await conn.execute(query)
            ]
