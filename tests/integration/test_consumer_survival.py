"""Consumers never die of a transient failure: a consumer whose batch fails unexpectedly, or whose
close raises CancelledError (aiokafka#647), restarts with backoff and goes on; a consumer started
while the log is unreachable waits for it; only ConsumerStopped ends one, counted, and
``intake consume`` then exits with code 3. On the embedded adapters, in process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from prometheus_client import CollectorRegistry

from consumers.service import EXIT_STOPPED, ConsumerStopped, StoreConsumer
from eventlog.embedded import EmbeddedEventLog
from eventlog.kafka import _stop_all
from eventlog.port import ConsumedRecord, LogUnavailableError, ProduceRecord, TopicPartition
from intake.cli import _consume
from wiring.runtime import Runtime, _start_log, open_runtime
from wiring.settings import Settings

TOPIC = "intake.quarantine"


class Flaky(StoreConsumer):
    """Stores nothing; fails its first batch with ``error``, then counts what it sees."""

    name = "quarantine"

    def __init__(self, runtime: Runtime, error: BaseException) -> None:
        super().__init__(runtime)
        self.error: BaseException | None = error
        self.seen = 0

    def topics(self) -> list[str]:
        return [TOPIC]

    async def _handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        self.seen += len(records)
        return {r.topic_partition: r.offset + 1 for r in records}


async def _run_until_seen(consumer: Flaky, count: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(20):
            while consumer.seen < count:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize(
    "error", [RuntimeError("a bug in a batch"), KeyError("x"), LogUnavailableError("broker gone")]
)
async def test_a_failed_batch_restarts_the_consumer_which_goes_on(
    tmp_path: Path, error: BaseException
) -> None:
    settings = Settings(data_dir=tmp_path, consumer_poll_seconds=0.05)
    registry = CollectorRegistry()
    async with open_runtime(settings, registry) as runtime:
        await runtime.event_log.produce([ProduceRecord(TOPIC, b"k", b"v")] * 3)
        consumer = Flaky(runtime, error)
        await _run_until_seen(consumer, 3)
    restarts = registry.get_sample_value(
        "intake_consumer_restarts_total",
        {"consumer": "quarantine", "reason": type(error).__name__},
    )
    assert restarts == 1.0


async def test_a_close_that_raises_cancelled_error_does_not_end_the_consumer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, consumer_poll_seconds=0.05)
    closes = 0
    real_close = EmbeddedEventLog.consumer

    def consumer_with_a_bad_close(self: EmbeddedEventLog, *args: Any, **kwargs: Any) -> Any:
        inner = real_close(self, *args, **kwargs)
        original = inner.close

        async def close() -> None:
            nonlocal closes
            closes += 1
            await original()
            raise asyncio.CancelledError  # what aiokafka's stop() did mid-failover

        inner.close = close  # type: ignore[method-assign]
        return inner

    monkeypatch.setattr(EmbeddedEventLog, "consumer", consumer_with_a_bad_close)
    async with open_runtime(settings, CollectorRegistry()) as runtime:
        await runtime.event_log.produce([ProduceRecord(TOPIC, b"k", b"v")] * 2)
        consumer = Flaky(runtime, LogUnavailableError("coordinator moved"))
        await _run_until_seen(consumer, 2)
    assert closes >= 2  # closed after the failure, and again at the end, and went on between


async def test_kafka_clients_closing_with_cancelled_error_are_logged_not_raised() -> None:
    async def cancelled() -> None:
        raise asyncio.CancelledError

    async def broken() -> None:
        raise AssertionError("aiokafka internals")

    await _stop_all(cancelled, broken, timeout=1.0)  # neither escapes

    async def slow() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(_stop_all(slow, timeout=5.0))
    await asyncio.sleep(0.05)
    task.cancel()  # a real cancellation of the caller still goes through
    with pytest.raises(asyncio.CancelledError):
        await task


class _UnreachableThenUp:
    """An event log that cannot be reached for its first ``failures`` starts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.starts = 0
        self.topics: Sequence[str] = ()

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise LogUnavailableError("kafka: connect: NodeNotReadyError")

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        self.topics = topics

    async def close(self) -> None:
        return None


async def test_a_consumer_started_while_the_log_is_down_waits_for_it() -> None:
    log = _UnreachableThenUp(failures=2)
    await _start_log(log, ["a", "b"], asyncio.Event())  # type: ignore[arg-type]
    assert (log.starts, list(log.topics)) == (3, ["a", "b"])
    with pytest.raises(LogUnavailableError):  # the gateway does not wait: it is restarted
        await _start_log(_UnreachableThenUp(failures=1), ["a"], None)  # type: ignore[arg-type]
    stopped = asyncio.Event()
    stopped.set()
    with pytest.raises(LogUnavailableError):  # asked to stop while waiting
        await _start_log(_UnreachableThenUp(failures=5), ["a"], stopped)  # type: ignore[arg-type]


class _Stops(StoreConsumer):
    name = "projector"

    def topics(self) -> list[str]:
        return [TOPIC]

    async def _handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        raise ConsumerStopped("too many unreadable records in a row")


def test_a_consumer_that_stops_for_good_exits_with_code_3(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, consumer_poll_seconds=0.05)

    async def seed() -> None:
        async with open_runtime(settings) as runtime:
            await runtime.event_log.produce([ProduceRecord(TOPIC, b"k", b"v")])

    asyncio.run(seed())
    with pytest.raises(typer.Exit) as exited:
        _consume(settings, "projector", _Stops, "127.0.0.1", None)
    assert exited.value.exit_code == EXIT_STOPPED == 3
