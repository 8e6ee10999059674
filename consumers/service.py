"""What every consumer of the event log that keeps its offsets in the store shares: a group per
consumer name, seeking to the stored offsets on assignment, and restarting after transient
failures (log or store unavailable) with a backoff of 0.2 s doubling to 10 s.

Subclasses implement :meth:`StoreConsumer._consume` (one batch loop) and name their topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Protocol

from sqlalchemy.exc import DBAPIError, OperationalError

from eventlog.port import LogConsumer, LogUnavailableError, TopicPartition
from intake.runtime import Runtime

log = logging.getLogger(__name__)


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

    async def _consume(self, consumer: LogConsumer, stop: asyncio.Event) -> None:
        raise NotImplementedError

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
            except (LogUnavailableError, OperationalError, DBAPIError) as exc:
                self.healthy = False
                if not isinstance(exc, LogUnavailableError):
                    self._rt.metrics.store_errors.labels(self.name).inc()
                log.warning(
                    "%s paused: %s; retrying in %.1fs", self.name, type(exc).__name__, backoff
                )
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:
                log.exception("%s stopped", self.name)
                raise
            finally:
                self.healthy = False
                await consumer.close()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):  # slept the full backoff
        await asyncio.wait_for(stop.wait(), seconds)
