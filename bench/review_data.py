"""Rejected items as quality staff meet them at national scale: many items, few problems.

:func:`seed` writes receipts and indexes rejected items straight into a store (as the
quarantine indexer would), spread over the last 30 days, from three vendors' software releases,
making the seven problems of :data:`PROBLEMS` in their shares. The review benchmark
(``bench/bench_review.py``) and the review tests at scale use it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventlog.port import TopicPartition
from statestore.engine import StoreEngines
from statestore.receipts import NewReceipt, NewReceiptItem, ReceiptRepository
from statestore.review import RejectedItem, ReviewRepository

UNITS = ("974152533", "987654325", "974633752", "991856878", "974749025", "964338531")
PER_RECEIPT = 50
INDEX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class SampleProblem:
    rule_id: str
    level: str
    field: str  # in the item
    value: Any  # what the item holds there (masked already where personal)
    vendor: str
    software: str
    software_version: str
    share: float  # of all items


PROBLEMS = (
    SampleProblem(
        "KOD-001", "codelist", "konsultasjonType", "XX", "DIPS AS", "DIPS Arena", "4.2", 0.35
    ),
    SampleProblem(
        "IDN-001", "identifier", "person/fodselsNr", "150312*****", "CGM", "CGM Journal", "2.1", 0.2
    ),
    SampleProblem(
        "KOD-002", "codelist", "konsultasjonType", "GA", "DIPS AS", "DIPS Arena", "4.1", 0.15
    ),
    SampleProblem("STR-001", "structure", "avtaleId", None, "Visma", "Visma Profil", "7.0", 0.1),
    SampleProblem(
        "KOD-001", "codelist", "konsultasjonType", "NY", "CGM", "CGM Journal", "2.1", 0.1
    ),
    SampleProblem(
        "BUS-001",
        "business",
        "startTid",
        "2031-01-01T10:00:00",
        "Visma",
        "Visma Profil",
        "7.1",
        0.05,
    ),
    SampleProblem(
        "IDN-010", "identifier", "tjeneste", "12345", "DIPS AS", "DIPS Arena", "4.2", 0.05
    ),
)


async def seed(engines: StoreEngines, items: int, *, now: datetime | None = None) -> int:
    """Write ``items`` rejected items (and their receipts); returns how many were indexed."""
    now = now or datetime.now(UTC)
    receipts = ReceiptRepository(engines)
    review = ReviewRepository(engines)
    pending: list[RejectedItem] = []
    indexed = 0
    n = 0
    for p_index, problem in enumerate(PROBLEMS):
        count = round(items * problem.share) if p_index < len(PROBLEMS) - 1 else items - n
        for start in range(0, count, PER_RECEIPT):
            size = min(PER_RECEIPT, count - start)
            number = n + start
            receipt_id = _id("receipt", p_index, start)
            unit = UNITS[(number // PER_RECEIPT) % len(UNITS)]
            # Spread over 30 days, the newest problems growing: a trend to see.
            received = now - timedelta(minutes=(number * 2111) % (30 * 24 * 60))
            rows = [
                NewReceiptItem(
                    i,
                    f"/0/avtale/{i}",
                    f"A-{number + i}",
                    None,
                    "rejected",
                    [_finding(problem, i)],
                )
                for i in range(size)
            ]
            await receipts.reserve(
                NewReceipt(
                    receipt_id=receipt_id,
                    unit=unit,
                    message_type="HST_Avtale",
                    version=1,
                    vendor=problem.vendor,
                    software=problem.software,
                    software_version=problem.software_version,
                    idempotency_key=None,
                    body_sha256=hashlib.sha256(receipt_id.encode()).hexdigest(),
                    received_at=received,
                    items=rows,
                )
            )
            await receipts.mark_validated(receipt_id, unit)
            pending.extend(
                _rejected(problem, receipt_id, unit, i, f"A-{number + i}", received)
                for i in range(size)
            )
            if len(pending) >= INDEX_BATCH:
                indexed += await review.index(SEED_CONSUMER, pending, {_TP: indexed})
                pending = []
        n += count
    if pending:
        indexed += await review.index(SEED_CONSUMER, pending, {_TP: indexed})
    return indexed


_TP = TopicPartition("intake.quarantine", 0)
SEED_CONSUMER = "review-sample"  # its own offsets: the real indexer's are left alone


def _id(*parts: Any) -> str:
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _finding(problem: SampleProblem, index: int) -> dict[str, Any]:
    return {
        "rule_id": problem.rule_id,
        "severity": "error",
        "level": problem.level,
        "path": f"/0/avtale/{index}/{problem.field}",
        "message_nb": "Eksempel på en feil.",
        "message_en": "A sample error.",
        "codelist_version": None,
    }


def _rejected(
    problem: SampleProblem,
    receipt_id: str,
    unit: str,
    index: int,
    object_id: str,
    received: datetime,
) -> RejectedItem:
    item: dict[str, Any] = {
        "avtaleId": object_id,
        "konsultasjonType": "NY",
        "startTid": "2026-11-02T10:00:00",
        "tjeneste": "230230004",
        "person": {"fodselsNr": "150312*****"},
    }
    node = item
    *parents, leaf = problem.field.split("/")
    for name in parents:
        node = node[name]
    if problem.value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = problem.value
    return RejectedItem(
        receipt_id=receipt_id,
        item_index=index,
        path=f"/0/avtale/{index}",
        unit=unit,
        message_type="HST_Avtale",
        version=1,
        object_id=object_id,
        received_at=received,
        item=item,
        block={"orgNr": unit},
        findings=[_finding(problem, index)],
    )
