"""The state projector: accepted events → history, last-known state, versions and integrity
findings.

One batch at a time: decode → move unreadable records to quarantine → apply the batch in one
store transaction that also stores the offsets → commit the offsets to the log's group (only
for lag monitoring: the store's offsets are the truth) → emit receipt updates. Offsets live with
the state, so the consumer seeks to them on assignment and never applies an event twice after a
crash. Graceful shutdown lets the batch in flight finish.

What happens to trouble:

* the store or the log is unavailable: the consumer restarts from the stored offsets after a
  backoff (0.2 s doubling to 10 s); nothing is skipped;
* a record that cannot be decoded (poison) is moved to the quarantine topic with its error, and
  the stream goes on — unless :class:`PoisonGuard` sees too many in a row or too high a share,
  which means something systemic is wrong: then the projector stops
  (:class:`TooManyPoisonRecordsError`) rather than quarantine everything.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from consumers.fold import FOLDS
from consumers.service import ConsumerStopped, StoreConsumer
from eventlog.port import (
    ConsumedRecord,
    LogUnavailableError,
    ProduceRecord,
    TopicPartition,
)
from schemas.codec import UnknownSchemaError
from schemas.events import Event
from statestore.projection import ApplyResult, SourcedEvent
from wiring.runtime import Runtime

log = logging.getLogger(__name__)

CONSUMER_NAME = "projector"


class TooManyPoisonRecordsError(ConsumerStopped):
    """The projector stopped: too many undecodable records, something is systemically wrong."""


@dataclass
class PoisonGuard:
    """Stops a consumer when poison is systemic: ``max_consecutive`` in a row, or more than
    ``max_ratio`` of the last ``window`` records (once ``min_records`` have been seen)."""

    max_consecutive: int = 20
    max_ratio: float = 0.2
    window: int = 1000
    min_records: int = 50
    _recent: deque[bool] = field(default_factory=deque)
    _consecutive: int = 0

    def record(self, poison: bool) -> None:
        self._recent.append(poison)
        if len(self._recent) > self.window:
            self._recent.popleft()
        self._consecutive = self._consecutive + 1 if poison else 0
        if self._consecutive > self.max_consecutive:
            raise TooManyPoisonRecordsError(f"{self._consecutive} unreadable records in a row")
        share = sum(self._recent) / len(self._recent)
        if len(self._recent) >= self.min_records and share > self.max_ratio:
            raise TooManyPoisonRecordsError(
                f"{share:.0%} of the last {len(self._recent)} records are unreadable"
            )


class Projector(StoreConsumer):
    name = CONSUMER_NAME

    def __init__(self, runtime: Runtime, *, guard: PoisonGuard | None = None) -> None:
        super().__init__(runtime)
        self._guard = guard or PoisonGuard()
        # One fold per message type (state is kept per type); an unknown x-fold fails here.
        self._folds = {m.message_type: FOLDS[m.fold] for m in runtime.catalogue}
        self._committed: tuple[list[SourcedEvent], ApplyResult] | None = None  # last batch

    def topics(self) -> list[str]:
        return self._rt.accepted_topics()

    async def _handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        batch, poison, next_offsets = self._decode(records)
        if poison:
            await self._rt.event_log.produce(poison)
            self._rt.metrics.poison_records.labels(CONSUMER_NAME).inc(len(poison))
        started = time.perf_counter()
        result = await self._rt.state.apply(CONSUMER_NAME, batch, next_offsets, self._folds)
        self._rt.metrics.apply_duration.observe(time.perf_counter() - started)
        self._count(batch, result)
        if result.applied:
            self._rt.receipt_changed.notify()
        self._committed = (batch, result)
        return next_offsets

    async def _after_commit(self) -> None:
        if self._committed is not None:
            batch, result = self._committed
            self._committed = None
            await self._emit_receipt_updates(batch, result)

    def _decode(
        self, records: list[ConsumedRecord]
    ) -> tuple[list[SourcedEvent], list[ProduceRecord], dict[TopicPartition, int]]:
        catalogue = self._rt.catalogue
        batch: list[SourcedEvent] = []
        poison: list[ProduceRecord] = []
        next_offsets: dict[TopicPartition, int] = {}
        for record in records:
            next_offsets[record.topic_partition] = record.offset + 1
            try:
                event = Event.from_avro(catalogue.codecs.decode(record.value))
            except (UnknownSchemaError, ValueError, KeyError, TypeError, EOFError) as exc:
                log.error(
                    "unreadable record at %s[%d]@%d moved to quarantine: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    type(exc).__name__,
                )
                self._guard.record(poison=True)
                poison.append(
                    ProduceRecord(
                        self._rt.topics.quarantine,
                        record.key,
                        catalogue.poison_codec.encode(
                            {
                                "consumer": CONSUMER_NAME,
                                "topic": record.topic,
                                "partition": record.partition,
                                "offset": record.offset,
                                "error": f"{type(exc).__name__}: {exc}"[:500],
                                "value": record.value,
                                "detected_at": datetime.now(UTC),
                            }
                        ),
                        (("kind", b"poison"),),
                    )
                )
                continue
            self._guard.record(poison=False)
            batch.append(SourcedEvent(event, record.topic, record.partition, record.offset))
        return batch, poison, next_offsets

    def _count(self, batch: list[SourcedEvent], result: ApplyResult) -> None:
        metrics = self._rt.metrics
        counted: set[str] = set()
        for sourced in batch:
            event = sourced.event
            fresh = event.event_id in result.applied_event_ids and event.event_id not in counted
            counted.add(event.event_id)
            metrics.events_applied.labels(
                event.message_type, "applied" if fresh else "duplicate"
            ).inc()
        for message_type, rule_id in result.violations:
            metrics.integrity_findings.labels(message_type, rule_id).inc()

    async def _emit_receipt_updates(self, batch: list[SourcedEvent], result: ApplyResult) -> None:
        """Tell the receipts topic which receipts changed. Best effort: the store stays the
        source of truth for receipts, so a failure here is logged, not retried."""
        by_receipt: dict[str, tuple[str, list[str], list[str]]] = {}
        for sourced in batch:
            e = sourced.event
            _, applied, duplicate = by_receipt.setdefault(e.receipt_id, (e.unit, [], []))
            (applied if e.event_id in result.applied_event_ids else duplicate).append(e.event_id)
        rules = sorted({rule for _, rule in result.violations})
        now = datetime.now(UTC)
        codec = self._rt.catalogue.receipt_update_codec
        updates = [
            ProduceRecord(
                self._rt.topics.receipts,
                unit.encode(),
                codec.encode(
                    {
                        "receipt_id": receipt_id,
                        "unit": unit,
                        "changed_at": now,
                        "applied_event_ids": applied,
                        "duplicate_event_ids": duplicate,
                        "integrity_rule_ids": rules,
                    }
                ),
                (("receipt_id", receipt_id.encode()),),
            )
            for receipt_id, (unit, applied, duplicate) in by_receipt.items()
        ]
        try:
            await self._rt.event_log.produce(updates)
        except LogUnavailableError as exc:
            log.warning("receipt updates not emitted: %s", exc)

    async def _report_lag(self) -> None:
        await super()._report_lag()
        quarantine = await self._rt.event_log.end_offsets(self._rt.topics.quarantine)
        self._rt.metrics.quarantine_records.set(sum(quarantine.values()))
