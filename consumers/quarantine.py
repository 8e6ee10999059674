"""The quarantine indexer: rejected items from the quarantine topic → the review index.

Each batch is indexed in one store transaction together with the consumer's offsets, so an item
appears in the review UI exactly once, however often the topic is read again. Records a consumer
moved to quarantine because it could not read them (``PoisonRecord``) are operators' business
(metrics, logs), not reviewers': they are passed over here, the consumer that moved them has
counted them. A record the indexer cannot read itself is logged by position, counted and passed
over too — there is no quarantine for the quarantine, and stopping would hide every later
rejection from the reviewers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from consumers.service import StoreConsumer
from eventlog.port import ConsumedRecord, TopicPartition
from schemas.codec import UnknownSchemaError
from statestore.review import RejectedItem, ReviewRepository
from wiring.runtime import Runtime

log = logging.getLogger(__name__)

CONSUMER_NAME = "quarantine"


class QuarantineIndexer(StoreConsumer):
    name = CONSUMER_NAME

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self._review = ReviewRepository(runtime.engines)

    def topics(self) -> list[str]:
        return [self._rt.topics.quarantine]

    async def _handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        items, next_offsets = self._decode(records)
        await self._review.index(CONSUMER_NAME, items, next_offsets)
        return next_offsets

    def _decode(
        self, records: list[ConsumedRecord]
    ) -> tuple[list[RejectedItem], dict[TopicPartition, int]]:
        catalogue = self._rt.catalogue
        items: list[RejectedItem] = []
        next_offsets: dict[TopicPartition, int] = {}
        for record in records:
            next_offsets[record.topic_partition] = record.offset + 1
            if record.value[2:10] == catalogue.poison_codec.fingerprint:
                continue  # an unreadable record moved here by another consumer
            try:
                datum = catalogue.quarantine_codec.decode(record.value)
                items.append(
                    RejectedItem(
                        receipt_id=datum["receipt_id"],
                        item_index=datum["item_index"],
                        path=datum["path"],
                        unit=datum["unit"],
                        message_type=datum["message_type"],
                        version=datum["version"],
                        object_id=datum["object_id"],
                        received_at=_aware(datum["recorded_time"]),
                        item=orjson.loads(datum["item_json"]),
                        block=orjson.loads(datum["block_json"]),
                        findings=datum["findings"],
                        sealed=bytes(datum["sealed"]) if datum.get("sealed") else None,
                    )
                )
            except (UnknownSchemaError, ValueError, KeyError, TypeError, EOFError) as exc:
                log.error(
                    "unreadable quarantine record at %s[%d]@%d passed over: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    type(exc).__name__,
                )
                self._rt.metrics.poison_records.labels(CONSUMER_NAME).inc()
        return items, next_offsets


def _aware(instant: datetime) -> datetime:
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
