"""The review store's writes: indexing quarantined items (with the indexer's offsets, in one
transaction), status changes, assignments and notes with their history, replay bookkeeping, and
the access log every read appends to."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from eventlog.port import TopicPartition
from statestore.bulk import chunks
from statestore.dialect import insert_for
from statestore.feed import append_changes
from statestore.offsets import store_offsets
from statestore.review.problems import finding_problem
from statestore.review.queries import ReviewQueries
from statestore.review.records import (
    AccessAction,
    RejectedItem,
    Replayed,
    Status,
    care_day,
    review_item_id,
)
from statestore.tables import (
    receipt_items,
    receipts,
    review_access_log,
    review_findings,
    review_history,
    review_items,
)


def _finding_row(item: dict[str, Any], position: int, finding: dict[str, Any]) -> dict[str, Any]:
    found = finding_problem(
        finding,
        item_path=item["path"],
        item=item["item_json"],
        block=item["block_json"],
        message_type=item["message_type"],
        version=item["version"],
        vendor=item["vendor"],
        software=item["software"],
        software_version=item["software_version"],
    )
    return {
        "item_id": item["item_id"],
        "position": position,
        "rule_id": finding["rule_id"],
        "level": finding["level"],
        "severity": finding["severity"],
        "path": finding["path"][:500],
        "field": found.field,
        "value": found.value,
        "problem": found.problem,
    }


class ReviewRepository(ReviewQueries):
    """The review store: its queries (:class:`ReviewQueries`) and the workflow's writes."""

    # -- indexing ------------------------------------------------------------------------------

    async def index(
        self,
        consumer: str,
        items: Sequence[RejectedItem],
        next_offsets: Mapping[TopicPartition, int],
    ) -> int:
        """Add rejected items (once each) and store the consumer's offsets, in one transaction.
        Returns how many items were new."""
        now = datetime.now(UTC)
        dialect = self._engines.dialect
        inserted: set[str] = set()
        async with self._engines.writer.begin() as conn:
            if items:
                senders = await self._senders(conn, {i.receipt_id for i in items})
                rows = {}
                for i in items:
                    item_id = review_item_id(i.receipt_id, i.item_index)
                    sender = senders.get(i.receipt_id, (None, None, None))
                    rows[item_id] = {
                        "item_id": item_id,
                        "receipt_id": i.receipt_id,
                        "item_index": i.item_index,
                        "path": i.path,
                        "unit": i.unit,
                        "vendor": sender[0],
                        "software": sender[1],
                        "software_version": sender[2],
                        "message_type": i.message_type,
                        "version": i.version,
                        "object_id": i.object_id,
                        "received_at": i.received_at,
                        "received_day": care_day(i.received_at),
                        "item_json": i.item,
                        "block_json": i.block,
                        "sealed": i.sealed,
                        "findings": i.findings,
                        "status": "new",
                        "assignee": None,
                        "updated_at": now,
                    }
                stmt = (
                    insert_for(dialect, review_items)
                    .on_conflict_do_nothing(index_elements=["item_id"])
                    .returning(review_items.c.item_id)
                )
                inserted = {r[0] for r in await conn.execute(stmt, list(rows.values()))}
                finding_rows = [
                    _finding_row(rows[item_id], n, f)
                    for item_id in sorted(inserted)
                    for n, f in enumerate(rows[item_id]["findings"])
                ]
                if finding_rows:
                    await conn.execute(review_findings.insert(), finding_rows)
            await store_offsets(conn, dialect, consumer, next_offsets)
        return len(inserted)

    async def _senders(
        self, conn: AsyncConnection, receipt_ids: set[str]
    ) -> dict[str, tuple[str | None, str | None, str | None]]:
        r = receipts
        rows = await conn.execute(
            select(r.c.receipt_id, r.c.vendor, r.c.software, r.c.software_version).where(
                r.c.receipt_id.in_(sorted(receipt_ids))
            )
        )
        return {row.receipt_id: (row.vendor, row.software, row.software_version) for row in rows}

    # -- workflow --------------------------------------------------------------------------------

    async def change(
        self,
        item_ids: Sequence[str],
        actor: str,
        *,
        status: Status | None = None,
        assignee: str | None = None,
        note: str | None = None,
    ) -> int:
        """Set the status and/or assignee (``""`` unassigns) of items and/or add a note to each,
        in one transaction. Returns how many items exist among ``item_ids``."""
        now = datetime.now(UTC)
        r = review_items
        changed = 0
        async with self._engines.writer.begin() as conn:
            for chunk in chunks(list(dict.fromkeys(item_ids)), 500):
                current = {
                    row.item_id: row
                    for row in await conn.execute(
                        select(r.c.item_id, r.c.status, r.c.assignee).where(r.c.item_id.in_(chunk))
                    )
                }
                changed += len(current)
                history: list[dict[str, Any]] = []
                for item_id, row in current.items():
                    entry = {"item_id": item_id, "at": now, "actor": actor, "text": None}
                    if status is not None and row.status != status:
                        history.append(
                            {
                                **entry,
                                "kind": "status",
                                "old_value": row.status,
                                "new_value": status,
                            }
                        )
                    new_assignee = (assignee or None) if assignee is not None else row.assignee
                    if new_assignee != row.assignee:
                        history.append(
                            {
                                **entry,
                                "kind": "assignee",
                                "old_value": row.assignee,
                                "new_value": new_assignee,
                            }
                        )
                    if note:
                        history.append(
                            {**entry, "kind": "note", "old_value": None, "new_value": None}
                            | {"text": note}
                        )
                values: dict[str, Any] = {"updated_at": now}
                if status is not None:
                    values["status"] = status
                if assignee is not None:
                    values["assignee"] = assignee or None
                if current:
                    await conn.execute(
                        update(r).where(r.c.item_id.in_(sorted(current))).values(**values)
                    )
                if history:
                    await conn.execute(review_history.insert(), history)
        return changed

    async def mark_replayed(self, replays: Sequence[Replayed], actor: str) -> int:
        """Record replays whose events the log has stored: resolve each review item and point
        the sender's receipt item at its new event. Items already marked are left as they are.
        Returns how many were marked now."""
        now = datetime.now(UTC)
        r, ri = review_items, receipt_items
        marked = 0
        async with self._engines.writer.begin() as conn:
            by_id = {x.item_id: x for x in replays}
            rows = await conn.execute(
                select(r.c.item_id, r.c.receipt_id, r.c.item_index, r.c.unit, r.c.status).where(
                    r.c.item_id.in_(sorted(by_id)), r.c.replay_event_id.is_(None)
                )
            )
            changes: set[tuple[str, str, Literal["replayed"]]] = set()
            for row in rows.all():
                replay = by_id[row.item_id]
                await conn.execute(
                    update(r)
                    .where(r.c.item_id == row.item_id)
                    .values(
                        status="resolved",
                        replay_event_id=replay.event_id,
                        replayed_at=now,
                        updated_at=now,
                    )
                )
                await conn.execute(
                    review_history.insert(),
                    [
                        {
                            "item_id": row.item_id,
                            "at": now,
                            "actor": actor,
                            "kind": "replay",
                            "old_value": row.status,
                            "new_value": replay.event_id,
                            "text": None,
                        }
                    ],
                )
                result = await conn.execute(
                    update(ri)
                    .where(
                        ri.c.receipt_id == row.receipt_id,
                        ri.c.item_index == row.item_index,
                        ri.c.outcome == "rejected",
                    )
                    .values(outcome="accepted", event_id=replay.event_id, findings=replay.findings)
                )
                if result.rowcount:
                    await conn.execute(
                        update(receipts)
                        .where(receipts.c.receipt_id == row.receipt_id)
                        .values(
                            accepted_count=receipts.c.accepted_count + 1,
                            rejected_count=receipts.c.rejected_count - 1,
                        )
                    )
                    changes.add((row.unit, row.receipt_id, "replayed"))
                marked += 1
            await append_changes(conn, sorted(changes))
        return marked

    # -- access log ------------------------------------------------------------------------------

    async def log_access(
        self,
        actor: str,
        action: AccessAction,
        *,
        item_ids: Iterable[str | None] = (None,),
        path: str | None = None,
        reason: str | None = None,
        item_count: int | None = None,
        total_count: int | None = None,
        correlation_id: str | None = None,
    ) -> None:
        now = datetime.now(UTC)
        rows = [
            {
                "at": now,
                "actor": actor,
                "action": action,
                "item_id": item_id,
                "path": path,
                "reason": reason,
                "item_count": item_count,
                "total_count": total_count,
                "correlation_id": correlation_id,
            }
            for item_id in item_ids
        ]
        if rows:
            async with self._engines.writer.begin() as conn:
                await conn.execute(review_access_log.insert(), rows)
