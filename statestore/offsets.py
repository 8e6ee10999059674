"""Consumer offsets kept in the store, written in the same transaction as what the consumer
stored, so a crash replays from exactly where the data ends (STYLE §11)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncConnection

from eventlog.port import TopicPartition
from statestore.dialect import insert_for
from statestore.tables import consumer_offsets


async def store_offsets(
    conn: AsyncConnection,
    dialect: str,
    consumer: str,
    next_offsets: Mapping[TopicPartition, int],
    *,
    forward_only: bool = False,
) -> None:
    """Upsert the consumer's next offsets inside the caller's transaction. ``forward_only``:
    move each only forward, never back (another replica may have gone further since a
    rebalance)."""
    if not next_offsets:
        return
    stmt = insert_for(dialect, consumer_offsets)
    new = stmt.excluded.next_offset
    kept = consumer_offsets.c.next_offset
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["consumer", "topic", "partition"],
            set_={"next_offset": case((new > kept, new), else_=kept) if forward_only else new},
        ),
        [
            {"consumer": consumer, "topic": tp.topic, "partition": tp.partition, "next_offset": n}
            for tp, n in next_offsets.items()
        ],
    )


async def load_offsets(conn: AsyncConnection, consumer: str) -> dict[TopicPartition, int]:
    rows = await conn.execute(
        select(
            consumer_offsets.c.topic, consumer_offsets.c.partition, consumer_offsets.c.next_offset
        ).where(consumer_offsets.c.consumer == consumer)
    )
    return {TopicPartition(r.topic, r.partition): int(r.next_offset) for r in rows}
