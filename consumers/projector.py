"""The state projector: accepted events → history and last-known state.

Offsets live with the state (the store's ``consumer_offsets``, written in the same transaction as
the events), so the consumer seeks to them on assignment and never double-applies after a crash.
Committing to the log's group as well only serves lag monitoring.

What happens to trouble:

* the store is unavailable (``OperationalError`` and friends): the batch is retried from the
  same offsets after a backoff; nothing is skipped;
* a record that cannot be decoded (poison): logged by position only and skipped; more than
  ``max_poison`` of them stops the projector, since that means something systemic is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from sqlalchemy.exc import DBAPIError, OperationalError

from consumers.fold import FOLDS
from eventlog.port import ConsumedRecord, LogConsumer, LogUnavailableError, TopicPartition
from intake.runtime import Runtime
from schemas.codec import UnknownSchemaError
from schemas.events import Event
from statestore.projection import SourcedEvent

log = logging.getLogger(__name__)

CONSUMER_NAME = "projector"
LAG_INTERVAL_SECONDS = 5.0


class TooManyPoisonRecordsError(RuntimeError):
    """The projector stopped: too many undecodable records, something is systemically wrong."""


class Projector:
    def __init__(self, runtime: Runtime, *, max_poison: int = 100) -> None:
        self._rt = runtime
        self._max_poison = max_poison
        self._poison = 0
        self.healthy = False
        # One fold per message type (state is kept per type); an unknown x-fold fails here.
        self._folds = {m.message_type: FOLDS[m.fold] for m in runtime.catalogue}

    @property
    def group(self) -> str:
        return f"{self._rt.settings.topic_prefix}.{CONSUMER_NAME}"

    async def _start_positions(
        self, assigned: frozenset[TopicPartition]
    ) -> Mapping[TopicPartition, int]:
        stored = await self._rt.state.load_offsets(CONSUMER_NAME)
        return {tp: off for tp, off in stored.items() if tp in assigned}

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; restart the consumer after transient failures."""
        backoff = 0.2
        while not stop.is_set():
            consumer = self._rt.event_log.consumer(
                self.group, self._rt.accepted_topics(), on_assign=self._start_positions
            )
            try:
                await consumer.start()
                self.healthy = True
                backoff = 0.2
                await self._consume(consumer, stop)
            except (LogUnavailableError, OperationalError, DBAPIError) as exc:
                self.healthy = False
                log.warning("projector paused: %s; retrying in %.1fs", type(exc).__name__, backoff)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:
                log.exception("projector stopped")
                raise
            finally:
                self.healthy = False
                await consumer.close()

    async def _consume(self, consumer: LogConsumer, stop: asyncio.Event) -> None:
        settings = self._rt.settings
        metrics = self._rt.metrics
        positions = dict(await self._rt.state.load_offsets(CONSUMER_NAME))
        lag_reported = 0.0
        while not stop.is_set():
            if time.monotonic() - lag_reported >= LAG_INTERVAL_SECONDS:
                await self._report_lag(positions)
                lag_reported = time.monotonic()
            records = await consumer.getmany(
                max_records=settings.projector_batch_size, timeout=settings.consumer_poll_seconds
            )
            if not records:
                continue
            batch, next_offsets = self._decode(records)
            started = time.perf_counter()
            result = await self._rt.state.apply(CONSUMER_NAME, batch, next_offsets, self._folds)
            metrics.apply_duration.observe(time.perf_counter() - started)
            counted: set[str] = set()
            for sourced in batch:
                event = sourced.event
                fresh = event.event_id in result.applied_event_ids and event.event_id not in counted
                counted.add(event.event_id)
                outcome = "applied" if fresh else "duplicate"
                metrics.events_applied.labels(event.message_type, outcome).inc()
            await consumer.commit(next_offsets)
            positions.update(next_offsets)

    async def _report_lag(self, positions: Mapping[TopicPartition, int]) -> None:
        for topic in self._rt.accepted_topics():
            ends = await self._rt.event_log.end_offsets(topic)
            lag = sum(max(0, end - positions.get(tp, 0)) for tp, end in ends.items())
            self._rt.metrics.consumer_lag.labels(CONSUMER_NAME, topic).set(lag)

    def _decode(
        self, records: list[ConsumedRecord]
    ) -> tuple[list[SourcedEvent], dict[TopicPartition, int]]:
        codecs = self._rt.catalogue.codecs
        batch: list[SourcedEvent] = []
        next_offsets: dict[TopicPartition, int] = {}
        for record in records:
            next_offsets[record.topic_partition] = record.offset + 1
            try:
                event = Event.from_avro(codecs.decode(record.value))
            except (UnknownSchemaError, ValueError, KeyError, TypeError, EOFError) as exc:
                self._poison += 1
                log.error(
                    "undecodable record skipped at %s[%d]@%d: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    type(exc).__name__,
                )
                if self._poison > self._max_poison:
                    raise TooManyPoisonRecordsError(
                        f"{self._poison} undecodable records; stopping the projector"
                    ) from exc
                continue
            batch.append(SourcedEvent(event, record.topic, record.partition, record.offset))
        return batch, next_offsets


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):  # slept the full backoff
        await asyncio.wait_for(stop.wait(), seconds)
