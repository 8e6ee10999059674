"""The review store's contract, on SQLite and PostgreSQL: indexing once with offsets, filters,
workflow history, the access log, replay bookkeeping (the sender's receipt and feed), statistics
and completeness."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from eventlog.port import TopicPartition
from statestore.engine import StoreEngines
from statestore.feed import START, ReceiptFeed
from statestore.projection import StateRepository
from statestore.receipts import NewReceipt, NewReceiptItem, ReceiptRepository
from statestore.review import (
    RejectedItem,
    Replayed,
    ReviewFilter,
    ReviewRepository,
    review_item_id,
)
from tests.contract.test_statestore_contract import engines

__all__ = ["engines"]  # the parametrised store fixture, shared with the state-store contract

UNIT = "974152533"
OTHER = "987654325"
T0 = datetime(2024, 5, 10, 8, 0, tzinfo=UTC)
TP = TopicPartition("intake.quarantine", 0)


def finding(rule_id: str, level: str = "codelist") -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "severity": "error",
        "level": level,
        "path": "/0/avtale/1/konsultasjonType",
        "message_nb": "Koden finnes ikke.",
        "message_en": "Unknown code.",
        "codelist_version": None,
    }


async def receipt(engines: StoreEngines, receipt_id: str, unit: str, vendor: str) -> None:
    await ReceiptRepository(engines).reserve(
        NewReceipt(
            receipt_id=receipt_id,
            unit=unit,
            message_type="HST_Avtale",
            version=1,
            vendor=vendor,
            software="Journal",
            software_version="9",
            idempotency_key=None,
            body_sha256="0" * 64,
            received_at=T0,
            items=[
                NewReceiptItem(0, "/0/avtale/0", "A-0", "e-0", "accepted", []),
                NewReceiptItem(1, "/0/avtale/1", "A-1", None, "rejected", [finding("KOD-001")]),
            ],
        )
    )
    await ReceiptRepository(engines).mark_validated(receipt_id, unit)


def rejected(receipt_id: str, unit: str, rule_id: str, level: str, day: int = 0) -> RejectedItem:
    return RejectedItem(
        receipt_id=receipt_id,
        item_index=1,
        path="/0/avtale/1",
        unit=unit,
        message_type="HST_Avtale",
        version=1,
        object_id="A-1",
        received_at=T0 + timedelta(days=day),
        item={"avtaleId": "A-1", "person": {"fodselsNr": "15031245610"}},
        block={"orgNr": unit},
        findings=[finding(rule_id, level)],
    )


async def indexed(engines: StoreEngines) -> ReviewRepository:
    review = ReviewRepository(engines)
    await receipt(engines, "r-1", UNIT, "Vendor A")
    await receipt(engines, "r-2", OTHER, "Vendor B")
    items = [
        rejected("r-1", UNIT, "KOD-001", "codelist"),
        rejected("r-2", OTHER, "IDN-001", "identifier", day=1),
    ]
    assert await review.index("quarantine", items, {TP: 2}) == 2
    return review


async def test_items_are_indexed_once_with_their_offsets(engines: StoreEngines) -> None:
    review = await indexed(engines)
    again = [rejected("r-1", UNIT, "KOD-001", "codelist")]
    assert await review.index("quarantine", again, {TP: 3}) == 0
    assert await StateRepository(engines).load_offsets("quarantine") == {TP: 3}
    page = await review.search(ReviewFilter())
    assert page.total == 2
    assert [r.vendor for r in page.rows] == ["Vendor B", "Vendor A"]  # newest first
    row = await review.get(review_item_id("r-1", 1))
    assert row is not None
    assert row.item["person"]["fodselsNr"] == "15031245610"
    assert row.block == {"orgNr": UNIT}


async def test_filters_combine(engines: StoreEngines) -> None:
    review = await indexed(engines)

    async def units(**kwargs: Any) -> list[str]:
        return [r.unit for r in (await review.search(ReviewFilter(**kwargs))).rows]

    assert await units(rule_id="KOD-001") == [UNIT]
    assert await units(level="identifier") == [OTHER]
    assert await units(vendor="Vendor A", rule_id="IDN-001") == []
    assert await units(day_from=date(2024, 5, 11)) == [OTHER]
    assert await units(day_to=date(2024, 5, 10)) == [UNIT]
    assert await units(message_type="HST_Avtale", version=1, unit=OTHER) == [OTHER]
    paged = await review.search(ReviewFilter(), sort="unit", descending=False, page_size=1)
    assert (paged.total, paged.pages, paged.rows[0].unit) == (2, 2, UNIT)


async def test_workflow_keeps_its_history(engines: StoreEngines) -> None:
    review = await indexed(engines)
    item_id = review_item_id("r-1", 1)
    await review.change([item_id], "kari", status="in_review", assignee="ola")
    await review.change([item_id], "ola", note="Sjekket", assignee="")
    history = await review.history(item_id)
    assert [(h.actor, h.kind, h.old_value, h.new_value, h.text) for h in history] == [
        ("kari", "status", "new", "in_review", None),
        ("kari", "assignee", None, "ola", None),
        ("ola", "assignee", "ola", None, None),
        ("ola", "note", None, None, "Sjekket"),
    ]
    row = await review.get(item_id)
    assert row is not None
    assert (row.status, row.assignee) == ("in_review", None)
    counts = (await review.search(ReviewFilter(status="new"))).status_counts
    assert counts == {"new": 1, "in_review": 1}  # counts ignore the status filter


async def test_access_log_is_appended_newest_first(engines: StoreEngines) -> None:
    review = await indexed(engines)
    item_id = review_item_id("r-1", 1)
    await review.log_access("kari", "view", item_ids=[item_id], correlation_id="c-1")
    await review.log_access(
        "kari", "reveal", item_ids=[item_id], path="item:/person/fodselsNr", reason="Kontroll"
    )
    await review.log_access("ola", "export", item_count=2)
    entries = await review.access_log()
    assert [(e.actor, e.action, e.item_id) for e in entries] == [
        ("ola", "export", None),
        ("kari", "reveal", item_id),
        ("kari", "view", item_id),
    ]
    assert entries[0].item_count == 2
    assert entries[1].reason == "Kontroll"
    assert [e.action for e in await review.access_log(item_id=item_id)] == ["reveal", "view"]
    assert [e.action for e in await review.access_log(actor="ola")] == ["export"]


async def test_a_replay_resolves_the_item_and_updates_the_senders_receipt(
    engines: StoreEngines,
) -> None:
    review = await indexed(engines)
    item_id = review_item_id("r-1", 1)
    marked = await review.mark_replayed([Replayed(item_id, "e-replay", [])], "kari")
    assert marked == 1
    assert await review.mark_replayed([Replayed(item_id, "e-other", [])], "kari") == 0

    row = await review.get(item_id)
    assert row is not None
    assert (row.status, row.replay_event_id) == ("resolved", "e-replay")
    view = await ReceiptRepository(engines).get("r-1")
    assert view is not None
    item = view.items[1]
    assert (item.status, item.event_id, item.findings) == ("accepted", "e-replay", [])
    changes = await ReceiptFeed(engines).read(START, 100, unit=UNIT)
    assert [c.kind for c in changes][-1] == "replayed"
    assert [h.kind for h in await review.history(item_id)] == ["replay"]


async def test_statistics_and_completeness(engines: StoreEngines) -> None:
    review = await indexed(engines)
    flt = ReviewFilter(day_from=date(2024, 5, 9), day_to=date(2024, 5, 12))
    stats = await review.statistics(flt)
    assert stats.days == ["2024-05-09", "2024-05-10", "2024-05-11", "2024-05-12"]
    assert stats.by_day_rule == {"KOD-001": {"2024-05-10": 1}, "IDN-001": {"2024-05-11": 1}}
    assert stats.by_unit == [(UNIT, 1), (OTHER, 1)]
    assert stats.by_vendor == [("Vendor A", 1), ("Vendor B", 1)]
    assert stats.received_by_day == {"2024-05-10": 4}  # both receipts were received on T0
    only_a = await review.statistics(ReviewFilter(vendor="Vendor A"))
    assert only_a.top_rules == [("KOD-001", 1)]

    grid = await review.completeness(date(2024, 5, 9), date(2024, 5, 11))
    assert [(u.unit, u.messages_by_day, u.last_delivery) for u in grid] == [
        (UNIT, {"2024-05-10": 1}, "2024-05-10"),
        (OTHER, {"2024-05-10": 1}, "2024-05-10"),
    ]
