"""Receipts: reserved before events are produced, confirmed after, read with derived statuses.

An item's status is derived when the receipt is read: ``rejected`` (validation), ``applied`` once
its event is in the history, ``duplicate`` when the history holds that event from another
receipt, else ``accepted``. Deriving it means the projector never races the gateway to update a
receipt row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select, update

from schemas.events import CARE_TIMEZONE
from statestore.bulk import JsonRowsInsert
from statestore.engine import StoreEngines
from statestore.feed import append_changes
from statestore.tables import events, integrity_findings, receipt_items, receipts
from validators.rules import rule

ReserveOutcome = Literal["created", "existing", "conflict"]

_ITEM_COLUMNS = tuple(c.name for c in receipt_items.c)
_HEAD_COLUMNS = (
    ("receipt_id", "text"),
    ("unit", "text"),
    ("message_type", "text"),
    ("version", "integer"),
    ("vendor", "text"),
    ("software", "text"),
    ("software_version", "text"),
    ("idempotency_key", "text"),
    ("body_sha256", "text"),
    ("received_at", "timestamptz"),
    ("stage", "text"),
    ("item_count", "integer"),
    ("accepted_count", "integer"),
    ("rejected_count", "integer"),
    ("sequence", "bigint"),
)
# On PostgreSQL, reserving is one statement, run on its own (autocommit): it reads the stored
# receipt and, when there is none, inserts the receipt and all its items (every item a JSON array
# in the one document of $1; the receipt's own values follow). A concurrent reservation of the
# same id fails on the primary key, as separate statements in one transaction would.
_ITEMS_OF_CREATED = JsonRowsInsert.of(
    receipt_items, _ITEM_COLUMNS, "WHERE EXISTS (SELECT FROM created)"
)
_HEAD_FIRST = 2
_HEAD_VALUES = ", ".join(f"${n}::{kind}" for n, (_, kind) in enumerate(_HEAD_COLUMNS, _HEAD_FIRST))
# Only the tables' own names go into the text; the values travel as parameters.
_RESERVE = (
    f"WITH stored AS (SELECT body_sha256, stage FROM receipts "  # noqa: S608
    f"WHERE receipt_id = ${_HEAD_FIRST}::text), "
    f"created AS (INSERT INTO receipts ({', '.join(name for name, _ in _HEAD_COLUMNS)}) "
    f"SELECT {_HEAD_VALUES} WHERE NOT EXISTS (SELECT FROM stored) RETURNING receipt_id), "
    f"items AS ({_ITEMS_OF_CREATED.sql}) "
    "SELECT body_sha256, stage FROM stored"
)

# The change row is what feed.append_changes writes, with the transaction id it orders by.
_MARK_VALIDATED = (
    "WITH marked AS (UPDATE receipts SET stage = 'validated' "
    "WHERE receipt_id = $1::text AND stage = 'received' RETURNING unit, receipt_id) "
    "INSERT INTO receipt_changes (txid, unit, receipt_id, kind, changed_at) "
    "SELECT pg_current_xact_id()::text::bigint, unit, receipt_id, 'validated', $2 FROM marked"
)


@dataclass(slots=True)  # not frozen: one per item, and a frozen init costs 3× as much
class ReceiptItemView:
    index: int
    path: str
    object_id: str | None
    event_id: str | None
    status: str  # accepted or rejected when new; then applied, duplicate, ...
    findings: list[dict[str, Any]]  # ReceiptView.as_dict writes an item out


# A new receipt's items are its view's items in their first state: the answer to a submission
# shows them as they are (500 objects fewer per 500-item message than copying them).
NewReceiptItem = ReceiptItemView


@dataclass(frozen=True, slots=True)
class NewReceipt:
    receipt_id: str
    unit: str
    message_type: str
    version: int
    vendor: str | None
    software: str | None
    software_version: str | None
    idempotency_key: str | None
    body_sha256: str
    received_at: datetime
    items: list[NewReceiptItem]
    sequence: int | None = None  # the sender's x-message-sequence


@dataclass(slots=True)
class ReceiptView:
    receipt_id: str
    unit: str
    message_type: str
    version: int
    vendor: str | None
    software: str | None
    software_version: str | None
    idempotency_key: str | None
    received_at: datetime
    stage: str
    items: list[ReceiptItemView] = field(default_factory=list)

    @classmethod
    def preview(cls, receipt: NewReceipt, *, stage: str) -> ReceiptView:
        """The receipt as validation left it, before any item is applied."""
        return cls(
            receipt_id=receipt.receipt_id,
            unit=receipt.unit,
            message_type=receipt.message_type,
            version=receipt.version,
            vendor=receipt.vendor,
            software=receipt.software,
            software_version=receipt.software_version,
            idempotency_key=receipt.idempotency_key,
            received_at=receipt.received_at,
            stage=stage,
            items=list(receipt.items),
        )

    @property
    def counts(self) -> dict[str, int]:
        statuses = Counter([item.status for item in self.items])
        rejected = statuses["rejected"]
        return {
            "items": len(self.items),
            "accepted": len(self.items) - rejected,
            "rejected": rejected,
            "applied": statuses["applied"],
            "duplicate": statuses["duplicate"],
        }

    @property
    def status(self) -> str:
        return self._status(self.counts)

    def _status(self, c: dict[str, int]) -> str:
        if self.stage == "received":
            return "received"
        if c["accepted"] == 0:
            return "rejected"
        settled = c["applied"] + c["duplicate"] == c["accepted"]
        if c["rejected"] == 0:
            return "applied" if settled else "accepted"
        return "partially_applied" if settled else "partially_accepted"

    def as_dict(self) -> dict[str, Any]:
        counts = self.counts  # a pass over the items: once, not again for the status
        return {
            "receipt_id": self.receipt_id,
            "submission": {
                "unit_orgnr": self.unit,
                "message_type": self.message_type,
                "version": self.version,
                "vendor": self.vendor,
                "software": self.software,
                "software_version": self.software_version,
                "received_at": self.received_at.isoformat(),
                "idempotency_key": self.idempotency_key,
            },
            "stage": self.stage,
            "status": self._status(counts),
            "counts": counts,
            "items": [
                {
                    "index": i.index,
                    "path": i.path,
                    "object_id": i.object_id,
                    "event_id": i.event_id,
                    "status": i.status,
                    "findings": i.findings,
                }
                for i in self.items
            ],
        }


class ReceiptRepository:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    async def reserve(self, receipt: NewReceipt) -> tuple[ReserveOutcome, str]:
        """Create the receipt in stage ``received``; report an existing one and its stage instead,
        or ``conflict`` when its idempotency scope was used for a different body."""
        rows = [
            (
                receipt.receipt_id,
                i.index,
                i.path,
                i.object_id,
                i.event_id,
                i.status,
                i.findings,
            )
            for i in receipt.items
        ]
        accepted = sum(1 for i in receipt.items if i.status == "accepted")
        head = (
            receipt.receipt_id,
            receipt.unit,
            receipt.message_type,
            receipt.version,
            receipt.vendor,
            receipt.software,
            receipt.software_version,
            receipt.idempotency_key,
            receipt.body_sha256,
            receipt.received_at,
            "received",
            len(receipt.items),
            accepted,
            len(receipt.items) - accepted,
            receipt.sequence,
        )
        row: Any
        if self._engines.dialect == "postgresql":
            if receipt.received_at.tzinfo is None:
                raise ValueError("naive datetimes are not stored")
            assert self._engines.driver is not None
            items = _ITEMS_OF_CREATED.parameters(rows)
            row = await self._engines.driver.fetchrow(_RESERVE, *items, *head)
        else:
            async with self._engines.writer.begin() as conn:
                row = (
                    await conn.execute(
                        select(receipts.c.body_sha256, receipts.c.stage).where(
                            receipts.c.receipt_id == receipt.receipt_id
                        )
                    )
                ).first()
                if row is None:
                    await conn.execute(
                        receipts.insert().values(
                            dict(zip((name for name, _ in _HEAD_COLUMNS), head, strict=True))
                        )
                    )
                    if rows:
                        await conn.execute(
                            receipt_items.insert(),
                            [dict(zip(_ITEM_COLUMNS, r, strict=True)) for r in rows],
                        )
        if row is None:
            return "created", "received"
        body_sha256, stage = row  # an asyncpg record on PostgreSQL, a SQLAlchemy row on SQLite
        if body_sha256 != receipt.body_sha256:
            return "conflict", stage
        return "existing", stage

    async def mark_validated(self, receipt_id: str, unit: str) -> None:
        """Move a receipt from ``received`` to ``validated`` (its events are in the log) and put
        the change on the feed; a receipt already past ``received`` is left alone."""
        if self._engines.dialect == "postgresql":
            # One autocommitted statement: a round trip instead of BEGIN, UPDATE, INSERT, COMMIT
            # (≈1 ms of a one-item message's answer, see bench/RESULTS.md).
            assert self._engines.driver is not None
            await self._engines.driver.fetchrow(_MARK_VALIDATED, receipt_id, datetime.now(UTC))
            return
        async with self._engines.writer.begin() as conn:
            marked = await conn.execute(
                update(receipts)
                .where(receipts.c.receipt_id == receipt_id, receipts.c.stage == "received")
                .values(stage="validated")
            )
            if marked.rowcount:
                await append_changes(conn, [(unit, receipt_id, "validated")])

    async def get(self, receipt_id: str) -> ReceiptView | None:
        async with self._engines.reader.connect() as conn:
            head = (
                await conn.execute(select(receipts).where(receipts.c.receipt_id == receipt_id))
            ).first()
            if head is None:
                return None
            rows = (
                await conn.execute(
                    select(receipt_items, events.c.receipt_id.label("applied_by"))
                    .select_from(
                        receipt_items.outerjoin(
                            events, events.c.event_id == receipt_items.c.event_id
                        )
                    )
                    .where(receipt_items.c.receipt_id == receipt_id)
                    .order_by(receipt_items.c.item_index)
                )
            ).all()
            applied = [r.event_id for r in rows if r.applied_by == receipt_id]
            integrity: dict[str, list[dict[str, Any]]] = {}
            for chunk in (applied[i : i + 500] for i in range(0, len(applied), 500)):
                for f in await conn.execute(
                    select(integrity_findings).where(integrity_findings.c.event_id.in_(chunk))
                ):
                    integrity.setdefault(f.event_id, []).append(
                        _integrity_finding(f.rule_id, f.params, f.event_id, rows)
                    )
        view = ReceiptView(
            receipt_id=head.receipt_id,
            unit=head.unit,
            message_type=head.message_type,
            version=head.version,
            vendor=head.vendor,
            software=head.software,
            software_version=head.software_version,
            idempotency_key=head.idempotency_key,
            received_at=head.received_at,
            stage=head.stage,
        )
        for row in rows:
            if row.outcome == "rejected":
                status = "rejected"
            elif row.applied_by is None:
                status = "accepted" if head.stage != "received" else "received"
            elif row.applied_by == receipt_id:
                status = "applied"
            else:
                status = "duplicate"
            findings = (
                row.findings + integrity.get(row.event_id, []) if row.event_id else row.findings
            )
            view.items.append(
                ReceiptItemView(
                    row.item_index, row.path, row.object_id, row.event_id, status, findings
                )
            )
        return view


@dataclass(frozen=True, slots=True)
class DayCount:
    day: str
    message_type: str
    messages: int
    items: int
    accepted: int
    rejected: int


class Completeness:
    """A unit's own delivery calendar and the gaps in its message sequence numbers."""

    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    async def calendar(self, unit: str, start: datetime, end: datetime) -> list[DayCount]:
        r = receipts
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(
                    r.c.received_at,
                    r.c.message_type,
                    r.c.item_count,
                    r.c.accepted_count,
                    r.c.rejected_count,
                ).where(
                    r.c.unit == unit,
                    r.c.received_at >= start,
                    r.c.received_at < end,
                    r.c.stage == "validated",
                )
            )
            days: dict[tuple[str, str], list[int]] = {}
            for row in rows:
                day = row.received_at.astimezone(CARE_TIMEZONE).date().isoformat()
                counts = days.setdefault((day, row.message_type), [0, 0, 0, 0])
                counts[0] += 1
                counts[1] += row.item_count
                counts[2] += row.accepted_count
                counts[3] += row.rejected_count
        return [DayCount(day, mt, *counts) for (day, mt), counts in sorted(days.items())]

    async def sequences(self, unit: str) -> list[int]:
        async with self._engines.reader.connect() as conn:
            rows = await conn.execute(
                select(receipts.c.sequence).where(
                    receipts.c.unit == unit, receipts.c.sequence.is_not(None)
                )
            )
            return sorted(int(r[0]) for r in rows)

    async def findings(self, unit: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Every finding on the unit's receipts received in [start, end), item by item."""
        out: list[dict[str, Any]] = []
        async with self._engines.reader.connect() as conn:
            heads = {
                h.receipt_id: h
                for h in await conn.execute(
                    select(receipts).where(
                        receipts.c.unit == unit,
                        receipts.c.received_at >= start,
                        receipts.c.received_at < end,
                    )
                )
            }
        for receipt_id in sorted(heads, key=lambda rid: heads[rid].received_at):
            view = await ReceiptRepository(self._engines).get(receipt_id)
            if view is None:
                continue
            for item in view.items:
                for finding in item.findings:
                    out.append(
                        {
                            "receipt_id": receipt_id,
                            "received_at": view.received_at.isoformat(),
                            "message_type": view.message_type,
                            "version": view.version,
                            "item_index": item.index,
                            "object_id": item.object_id,
                            "item_status": item.status,
                            **finding,
                        }
                    )
        return out


def _integrity_finding(
    rule_id: str, params: dict[str, Any], event_id: str, rows: Any
) -> dict[str, Any]:
    """An integrity finding as it appears on the receipt, at its item's path."""
    path = next((r.path for r in rows if r.event_id == event_id), "")
    return rule(rule_id).finding(path, **params).as_dict()
