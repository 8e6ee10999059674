"""What every consumer of the event log that keeps its offsets in the store shares: a group per
consumer name, seeking to the stored offsets on assignment, and restarting after failures with
a backoff of 0.2 s doubling to 10 s.

What happens on an error:

* the log or the store unavailable (a broker lost, a coordinator moving, a rebalance, the
  database restarting): logged as a warning, ``intake_consumer_restarts_total`` counted, the
  consumer closed and started again after the backoff;
* any other exception: the same, logged with its traceback — a consumer never exits on its own
  for something that may pass, and offsets living with the state make a restart safe;
* :class:`ConsumerStopped` (systemic poison, a configuration error): counted in
  ``intake_consumer_stops_total`` and raised; ``intake consume`` exits with
  :data:`EXIT_STOPPED`.

Closing a consumer never raises: its failures (aiokafka may raise CancelledError out of its
close, aiokafka#647) are logged.

Subclasses name their topics and implement :meth:`StoreConsumer._handle`: store one batch in one
transaction together with the next offsets, and return those offsets. The loop then commits them
to the log's group too (only for lag monitoring: the store's offsets are the truth), reports lag
now and then, and calls :meth:`StoreConsumer._after_commit` for follow-on work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Protocol

from sqlalchemy.exc import DBAPIError, OperationalError

from eventlog.port import ConsumedRecord, LogConsumer, LogUnavailableError, TopicPartition
from wiring.runtime import Runtime

log = logging.getLogger(__name__)

LAG_INTERVAL_SECONDS = 5.0
EXIT_STOPPED = 3  # the exit code of `intake consume` when a consumer stopped for good


class ConsumerStopped(RuntimeError):
    """A consumer must not go on (systemic poison, a configuration error): it stops, and the
    process exits with :data:`EXIT_STOPPED`."""


class ConsumerService(Protocol):
    """A long-running consumer: ``run`` until ``stop`` is set; ``healthy`` for metrics."""

    @property
    def healthy(self) -> bool: ...

    async def run(self, stop: asyncio.Event) -> None: ...


class StoreConsumer:
    name: str  # the consumer's name: its group suffix and its key for offsets in the store

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self.healthy = False

    @property
    def group(self) -> str:
        return f"{self._rt.settings.topic_prefix}.{self.name}"

    def topics(self) -> list[str]:
        raise NotImplementedError

    async def _handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        raise NotImplementedError

    async def _after_commit(self) -> None:
        """Work that follows a stored and committed batch (best effort)."""

    async def _consume(self, consumer: LogConsumer, stop: asyncio.Event) -> None:
        settings = self._rt.settings
        lag_reported = 0.0
        # Next offsets stored, as far as this run knows: where it started, then what it stored.
        known: dict[TopicPartition, int] = consumer.positions()
        while not stop.is_set():
            if time.monotonic() - lag_reported >= LAG_INTERVAL_SECONDS:
                await self._report_lag()
                lag_reported = time.monotonic()
            records = await consumer.getmany(
                max_records=settings.projector_batch_size, timeout=settings.consumer_poll_seconds
            )
            if not records:
                await self._step_over_skipped(consumer, known)
                continue
            next_offsets = await self._handle(records)
            await consumer.commit(next_offsets)
            known.update(next_offsets)
            await self._after_commit()

    async def _step_over_skipped(
        self, consumer: LogConsumer, known: dict[TopicPartition, int]
    ) -> None:
        """When idle, move the stored offsets past what the log skipped after the last record:
        every Kafka transaction ends with a marker that takes an offset and is never returned
        (aborted records too). Without this the lag would stay at one per partition written to."""
        ahead = {tp: p for tp, p in consumer.positions().items() if p > known.get(tp, 0)}
        if not ahead:
            return
        await self._rt.state.advance_offsets(self.name, ahead)
        await consumer.commit(ahead)
        known.update(ahead)

    async def _report_lag(self) -> None:
        """The whole consumer's lag per topic: the log's end offsets minus the offsets in the
        store, which every replica writes. Each replica reports the same figure, so dashboards
        and alerts take the max over instances, never the sum."""
        positions = await self._rt.state.load_offsets(self.name)
        for topic in self.topics():
            ends = await self._rt.event_log.end_offsets(topic)
            lag = sum(max(0, end - positions.get(tp, 0)) for tp, end in ends.items())
            self._rt.metrics.consumer_lag.labels(self.name, topic).set(lag)

    async def _start_positions(
        self, assigned: frozenset[TopicPartition]
    ) -> Mapping[TopicPartition, int]:
        stored = await self._rt.state.load_offsets(self.name)
        return {tp: off for tp, off in stored.items() if tp in assigned}

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; restart the consumer after transient failures."""
        backoff = 0.2
        while not stop.is_set():
            consumer = self._rt.event_log.consumer(
                self.group, self.topics(), on_assign=self._start_positions
            )
            try:
                await consumer.start()
                self.healthy = True
                backoff = 0.2
                await self._consume(consumer, stop)
                continue
            except ConsumerStopped as exc:
                self._rt.metrics.consumer_stops.labels(self.name, type(exc).__name__).inc()
                log.error("%s stopped for good: %s", self.name, exc)
                raise
            except (LogUnavailableError, OperationalError, DBAPIError) as exc:
                if not isinstance(exc, LogUnavailableError):
                    self._rt.metrics.store_errors.labels(self.name).inc()
                # Our own text for the log; a database error's text may hold SQL parameters.
                detail = str(exc)[:300] if isinstance(exc, LogUnavailableError) else "store"
                log.warning(
                    "%s paused: %s: %s; retrying in %.1fs",
                    self.name,
                    type(exc).__name__,
                    detail,
                    backoff,
                )
                reason = type(exc).__name__
            except Exception as exc:  # not known to be transient, but no reason to give up
                log.exception("%s failed; restarting in %.1fs", self.name, backoff)
                reason = type(exc).__name__
            finally:
                self.healthy = False
                await close_quietly(consumer, self.name)
            self._rt.metrics.consumer_restarts.labels(self.name, reason).inc()
            await sleep_or_stop(stop, backoff)
            backoff = min(backoff * 2, 10.0)


async def close_quietly(consumer: LogConsumer, name: str) -> None:
    """Close ``consumer``; a failure to close is logged, never raised (the consumer is being
    replaced anyway). A cancellation of this task itself still goes through."""
    try:
        await consumer.close()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("%s: closing the consumer raised CancelledError (aiokafka#647)", name)
    except Exception as exc:
        log.warning("%s: closing the consumer failed: %s: %s", name, type(exc).__name__, exc)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):  # slept the full backoff
        await asyncio.wait_for(stop.wait(), seconds)
