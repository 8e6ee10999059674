"""Webhook registrations and deliveries. The pull feed stays the source of truth; a delivery is
a best-effort push of one receipt change, retried with backoff and parked when it keeps failing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from statestore.dialect import insert_for
from statestore.engine import StoreEngines
from statestore.feed import Change, Position
from statestore.tables import feed_positions, webhook_deliveries, webhooks


@dataclass(frozen=True, slots=True)
class Webhook:
    unit: str
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: int
    unit: str
    receipt_id: str
    change_seq: int
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


def _delivery(row: Any) -> Delivery:
    return Delivery(
        row.delivery_id,
        row.unit,
        row.receipt_id,
        row.change_seq,
        row.status,
        row.attempts,
        row.next_attempt_at,
        row.last_error,
    )


class WebhookRepository:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    async def put(self, unit: str, url: str, secret: str) -> None:
        stmt = insert_for(self._engines.dialect, webhooks)
        async with self._engines.writer.begin() as conn:
            await conn.execute(
                stmt.values(
                    unit=unit, url=url, secret=secret, created_at=datetime.now(UTC)
                ).on_conflict_do_update(
                    index_elements=["unit"],
                    set_={
                        "url": stmt.excluded.url,
                        "secret": stmt.excluded.secret,
                        "created_at": stmt.excluded.created_at,
                    },
                )
            )

    async def delete(self, unit: str) -> bool:
        async with self._engines.writer.begin() as conn:
            result = await conn.execute(delete(webhooks).where(webhooks.c.unit == unit))
        return bool(result.rowcount)

    async def get(self, unit: str) -> Webhook | None:
        async with self._engines.reader.connect() as conn:
            row = (await conn.execute(select(webhooks).where(webhooks.c.unit == unit))).first()
        return None if row is None else Webhook(row.unit, row.url, row.secret)

    async def position(self, reader: str) -> Position:
        async with self._engines.reader.connect() as conn:
            row = (
                await conn.execute(select(feed_positions).where(feed_positions.c.reader == reader))
            ).first()
        return Position(0, 0) if row is None else Position(int(row.txid), int(row.seq))

    async def schedule(self, reader: str, changes: list[Change], now: datetime) -> int:
        """Queue deliveries for the changes of units with a webhook, and move the reader's
        position past them, in one transaction."""
        if not changes:
            return 0
        last = changes[-1].position
        async with self._engines.writer.begin() as conn:
            units = {
                r.unit
                for r in await conn.execute(
                    select(webhooks.c.unit).where(webhooks.c.unit.in_({c.unit for c in changes}))
                )
            }
            rows = [
                {
                    "unit": c.unit,
                    "receipt_id": c.receipt_id,
                    "change_seq": c.position.seq,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for c in changes
                if c.unit in units
            ]
            if rows:
                await conn.execute(webhook_deliveries.insert(), rows)
            stmt = insert_for(self._engines.dialect, feed_positions)
            await conn.execute(
                stmt.values(reader=reader, txid=last.txid, seq=last.seq).on_conflict_do_update(
                    index_elements=["reader"],
                    set_={"txid": stmt.excluded.txid, "seq": stmt.excluded.seq},
                )
            )
        return len(rows)

    async def due(self, now: datetime, limit: int) -> list[Delivery]:
        d = webhook_deliveries
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(d)
                .where(d.c.status == "pending", d.c.next_attempt_at <= now)
                .order_by(d.c.next_attempt_at, d.c.delivery_id)
                .limit(limit)
            )
            return [_delivery(r) for r in rows]

    async def delivered(self, delivery_id: int, now: datetime) -> None:
        await self._update(
            delivery_id,
            status="delivered",
            delivered_at=now,
            last_error=None,
            attempts=webhook_deliveries.c.attempts + 1,
        )

    async def failed(self, delivery: Delivery, error: str, *, retry_at: datetime | None) -> None:
        """A failed attempt: try again at ``retry_at``, or park the delivery when it is None."""
        if retry_at is None:
            await self._update(
                delivery.delivery_id,
                status="parked",
                last_error=error[:500],
                attempts=delivery.attempts + 1,
            )
        else:
            await self._update(
                delivery.delivery_id,
                last_error=error[:500],
                attempts=delivery.attempts + 1,
                next_attempt_at=retry_at,
            )

    async def _update(self, delivery_id: int, **values: object) -> None:
        async with self._engines.writer.begin() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.delivery_id == delivery_id)
                .values(**values)
            )

    async def listing(self, status: str | None, limit: int) -> list[Delivery]:
        d = webhook_deliveries
        query = select(d).order_by(d.c.delivery_id.desc()).limit(limit)
        if status is not None:
            query = query.where(d.c.status == status)
        async with self._engines.reader.connect() as conn:
            return [_delivery(r) for r in await conn.execute(query)]

    async def requeue(self, delivery_id: int, now: datetime) -> bool:
        """An operator's retry of a parked delivery: attempts start again."""
        d = webhook_deliveries
        async with self._engines.writer.begin() as conn:
            result = await conn.execute(
                update(d)
                .where(d.c.delivery_id == delivery_id, d.c.status == "parked")
                .values(status="pending", attempts=0, next_attempt_at=now)
            )
        return bool(result.rowcount)


def backoff(attempts: int, base: float, jitter: float) -> timedelta:
    """Exponential backoff capped at an hour; ``jitter`` in [0.5, 1.5) spreads retries out."""
    return timedelta(seconds=min(3600.0, base * 2 ** max(0, attempts - 1) * jitter))
