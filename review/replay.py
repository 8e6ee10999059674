"""Replay after a fix: re-validate quarantined items with today's catalogue and code lists, show
which would pass, and publish those as new events.

Each rejected item is re-validated alone, inside a copy of the block it came in (kept in the
quarantine record), so unit, municipality and other block fields are checked as before. An item
that now passes becomes an event like any accepted item, except:

* its event id is derived from the review item (``replay:<item id>``), so replaying it twice —
  or again after a crash between publishing and bookkeeping — yields the same event, which the
  projector applies once;
* its recorded time is the replay's time (the register learns of it now), its valid time is
  the item's own;
* it carries the header ``replay_of`` = the review item id, and the sender's receipt item is
  pointed at it (:meth:`statestore.review.ReviewRepository.mark_replayed`), so the sender sees
  the item turn ``applied`` in the receipt and its feed.

Order: publish first, then record. A crash in between leaves the event applied and the review
item unresolved; replaying it again publishes the same event (a duplicate, ignored) and records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from eventlog.port import ProduceRecord
from identity.pseudonyms import VaultEntry
from review.masking import as_sent
from schemas.events import Event, event_for_item
from statestore.review import Replayed, ReviewFilter, ReviewRepository, ReviewRow
from validators.engine import ValidationContext
from validators.findings import has_errors
from wiring.runtime import Runtime

# What a replay that found the event log unavailable tells whoever asked for it.
REPLAY_LATER = "Nothing was replayed; try again in a moment."

Verdict = Literal["passes", "fails", "already_replayed", "model_withdrawn"]


@dataclass(frozen=True, slots=True)
class ReplayCheck:
    row: ReviewRow
    verdict: Verdict
    findings: list[dict[str, Any]]  # from re-validation, at the item's original paths
    event: Event | None = None
    sealed: list[VaultEntry] = field(default_factory=list)  # its identifiers, for the vault

    def as_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.row.item_id,
            "receipt_id": self.row.receipt_id,
            "item_index": self.row.item_index,
            "message_type": self.row.message_type,
            "version": self.row.version,
            "unit": self.row.unit,
            "verdict": self.verdict,
            "findings": self.findings,
            "event_id": self.event.event_id if self.event else self.row.replay_event_id,
        }


@dataclass(frozen=True, slots=True)
class ReplayResult:
    checks: list[ReplayCheck]
    replayed: list[ReplayCheck]


@dataclass(slots=True)
class ReplayTotals:
    """A replay over a whole filter, done chunk by chunk: how many had each verdict."""

    counts: dict[str, int] = field(default_factory=dict)
    replayed: list[ReplayCheck] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return sum(self.counts.values())

    def add(self, result: ReplayResult) -> None:
        for c in result.checks:
            self.counts[c.verdict] = self.counts.get(c.verdict, 0) + 1
        self.replayed.extend(result.replayed)


REPLAY_CHUNK = 500  # items validated and published per transaction of a replay over a filter


class ReplayService:
    def __init__(self, runtime: Runtime, review: ReviewRepository) -> None:
        self._rt = runtime
        self._review = review

    async def check(self, item_ids: list[str]) -> list[ReplayCheck]:
        """Re-validate the items with the current catalogue; stores and publishes nothing."""
        await self._rt.codelists.refresh()  # lists imported a moment ago count
        ctx = self._rt.validation_context()
        now = datetime.now(UTC)
        checks = []
        for row in await self._review.get_many(item_ids):
            checks.append(self._check_one(row, ctx, now))
        return checks

    def _check_one(self, row: ReviewRow, ctx: ValidationContext, now: datetime) -> ReplayCheck:
        if row.replay_event_id is not None:
            return ReplayCheck(row, "already_replayed", [])
        model = self._rt.catalogue.get(row.message_type, row.version)
        if model is None:
            return ReplayCheck(row, "model_withdrawn", [])
        array_field = row.path.split("/")[2]
        item_as_sent, block_as_sent = as_sent(row, self._rt.identities)
        message = [{**block_as_sent, array_field: [item_as_sent]}]
        alone = f"/0/{array_field}/0"
        result = self._rt.validators[model.key].validate(message, ctx)
        findings = [
            {**f.as_dict(), "path": _moved(f.path, alone, row.path)}
            for f in [*result.message_findings, *(i for x in result.items for i in x.findings)]
        ]
        if has_errors(result.message_findings) or not result.items:
            return ReplayCheck(row, "fails", findings)
        item = result.items[0]
        if item.value is None:
            return ReplayCheck(row, "fails", findings)
        item.index = row.item_index
        item.path = row.path
        item.value, sealed = self._rt.identities.item(model, item.spec.array_field, item.value)
        event = event_for_item(
            model,
            item,
            unit=row.unit,
            receipt_id=row.receipt_id,
            body_sha256=f"replay:{row.item_id}",
            recorded_time=now,
        )
        return ReplayCheck(row, "passes", findings, event, sealed)

    async def replay(self, item_ids: list[str], actor: str, correlation_id: str) -> ReplayResult:
        """Publish the items that now pass, then record them as replayed (and in the access
        log, whatever passed)."""
        checks = await self.check(item_ids)
        passing = [c for c in checks if c.event is not None]
        records = []
        for check in passing:
            event = check.event
            assert event is not None
            model = self._rt.catalogue.require(event.message_type, event.version)
            records.append(
                ProduceRecord(
                    self._rt.topics.accepted(event.message_type, event.version),
                    event.key,
                    model.event_codec.encode(event.to_avro()),
                    (
                        ("event_id", event.event_id.encode()),
                        ("receipt_id", event.receipt_id.encode()),
                        ("message_type", event.message_type.encode()),
                        ("version", str(event.version).encode()),
                        ("unit", event.unit.encode()),
                        ("trace_id", correlation_id.encode()),
                        ("replay_of", check.row.item_id.encode()),
                    ),
                )
            )
        if records:
            await self._rt.vault.store([e for c in passing for e in c.sealed])
            await self._rt.produce(records)  # LogUnavailableError: nothing was replayed
            await self._review.mark_replayed(
                [
                    Replayed(c.row.item_id, c.event.event_id, c.findings)
                    for c in passing
                    if c.event is not None
                ],
                actor,
            )
            self._rt.receipt_changed.notify()
        await self._review.log_access(
            actor,
            "replay",
            item_ids=[c.row.item_id for c in passing] or [None],
            item_count=len(passing),
            correlation_id=correlation_id,
        )
        return ReplayResult(checks, passing)

    async def replay_filter(
        self, flt: ReviewFilter, actor: str, correlation_id: str
    ) -> ReplayTotals:
        """Replay every item of a filter, :data:`REPLAY_CHUNK` at a time (each chunk published
        and recorded before the next is read, so a failure part way keeps what was done)."""
        totals = ReplayTotals()
        async for chunk in self._review.id_chunks(flt, REPLAY_CHUNK):
            totals.add(await self.replay(chunk, actor, correlation_id))
        return totals


def _moved(path: str, alone: str, original: str) -> str:
    """A finding's path in the one-item message, moved back to where the item was sent."""
    return original + path[len(alone) :] if path.startswith(alone) else path


def verdict_summary(checks: Sequence[ReplayCheck]) -> dict[str, Any]:
    """How many checks had each verdict, and each check, as the review shows a replay."""
    counts: dict[str, int] = {}
    for c in checks:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    return {"counts": counts, "checks": [c.as_dict() for c in checks]}
