"""The review store's records: a rejected item as indexed, the filter over them, the rows,
pages, history and access-log entries the queries answer with, and the workflow's statuses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from schemas.events import CARE_TIMEZONE
from statestore.tables import (
    review_items,
)

Status = Literal["new", "in_review", "resolved", "wont_fix", "awaiting_resubmission"]
STATUSES: tuple[Status, ...] = ("new", "in_review", "resolved", "wont_fix", "awaiting_resubmission")
AccessAction = Literal["list", "view", "reveal", "export", "replay"]
SORTS = {
    "received": review_items.c.received_at,
    "unit": review_items.c.unit,
    "vendor": review_items.c.vendor,
    "message_type": review_items.c.message_type,
    "status": review_items.c.status,
}
MAX_PAGE_SIZE = 500
_NAMESPACE = uuid.UUID("0b8f1a52-6c3e-5d7a-8e21-4f9c3b6d2a70")


def review_item_id(receipt_id: str, item_index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{receipt_id}\x1f{item_index}"))


def care_day(instant: datetime) -> str:
    return instant.astimezone(CARE_TIMEZONE).date().isoformat()


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """One item of the quarantine topic, as the indexer decoded it."""

    receipt_id: str
    item_index: int
    path: str
    unit: str
    message_type: str
    version: int
    object_id: str | None
    received_at: datetime
    item: Any  # personal values masked
    block: dict[str, Any]  # likewise
    findings: list[dict[str, Any]]
    sealed: bytes | None = None  # the item and block as sent (identity/pseudonyms.py)


@dataclass(frozen=True, slots=True)
class ReviewFilter:
    unit: str | None = None
    vendor: str | None = None
    software: str | None = None
    message_type: str | None = None
    version: int | None = None
    rule_id: str | None = None
    level: str | None = None
    status: str | None = None
    day_from: date | None = None
    day_to: date | None = None  # inclusive
    problem: str | None = None  # statestore/review/problems.py

    def as_query(self) -> dict[str, str]:
        """The filter as query parameters (for links that keep it)."""
        out: dict[str, str] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if value is not None and value != "":
                out[name] = value.isoformat() if isinstance(value, date) else str(value)
        return out


@dataclass(slots=True)
class ReviewRow:
    item_id: str
    receipt_id: str
    item_index: int
    path: str
    unit: str
    vendor: str | None
    software: str | None
    software_version: str | None
    message_type: str
    version: int
    object_id: str | None
    received_at: datetime
    status: str
    assignee: str | None
    updated_at: datetime
    replay_event_id: str | None
    replayed_at: datetime | None
    findings: list[dict[str, Any]]
    item: Any = None  # masked (before the sealed copy existed: as sent)
    block: dict[str, Any] = field(default_factory=dict)
    sealed: bytes | None = None  # the item and block as sent, sealed; None in older rows

    @property
    def rule_ids(self) -> list[str]:
        return sorted({f["rule_id"] for f in self.findings})


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[ReviewRow]
    total: int
    status_counts: dict[str, int]
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True, slots=True)
class HistoryRow:
    at: datetime
    actor: str
    kind: str
    old_value: str | None
    new_value: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class AccessRow:
    seq: int
    at: datetime
    actor: str
    action: str
    item_id: str | None
    path: str | None
    reason: str | None
    item_count: int | None
    total_count: int | None = None


@dataclass(frozen=True, slots=True)
class Replayed:
    item_id: str
    event_id: str
    findings: list[dict[str, Any]]  # what re-validation found (warnings only, or none)


@dataclass(frozen=True, slots=True)
class Statistics:
    days: list[str]
    by_day_rule: dict[str, dict[str, int]]  # rule -> day -> rejected items
    by_day: dict[str, int]  # day -> rejected items
    received_by_day: dict[str, int]  # day -> items received (accepted or rejected)
    by_unit: list[tuple[str, int]]
    by_vendor: list[tuple[str, int]]
    top_rules: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class UnitDays:
    unit: str
    messages_by_day: dict[str, int]
    last_delivery: str | None
