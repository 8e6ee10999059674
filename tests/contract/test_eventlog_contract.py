"""The event-log contract. Every adapter runs these same tests: add its factory to
``ADAPTERS`` below."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from eventlog.embedded import EmbeddedEventLog
from eventlog.kafka import KafkaEventLog
from eventlog.partitioner import partition_for
from eventlog.port import (
    ConsumedRecord,
    EventLog,
    LogUnavailableError,
    ProduceRecord,
    TopicPartition,
)
from tests.conftest import require_service

LogFactory = Callable[[], Awaitable[EventLog]]


async def _embedded(tmp_path: Path) -> LogFactory:
    path = tmp_path / "log.sqlite3"

    async def make() -> EventLog:
        log = EmbeddedEventLog(path, default_partitions=3, poll_interval=0.02)
        await log.start()
        return log

    return make


async def _kafka(tmp_path: Path) -> LogFactory:
    bootstrap = require_service("INTAKE_TEST_KAFKA_BOOTSTRAP", "Apache Kafka")

    async def make() -> EventLog:
        log = KafkaEventLog(bootstrap, default_partitions=3)
        await log.start()
        return log

    return make


ADAPTERS = {"embedded": _embedded, "kafka": _kafka}
_MARKS = {"kafka": pytest.mark.kafka}


@pytest.fixture(
    params=[pytest.param(name, marks=_MARKS.get(name, ())) for name in sorted(ADAPTERS)]
)
async def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LogFactory]:
    """Opens logs on one shared storage; every log it opened is closed after the test."""
    make = await ADAPTERS[request.param](tmp_path)
    opened: list[EventLog] = []

    async def factory() -> EventLog:
        log = await make()
        opened.append(log)
        return log

    yield factory
    for log in opened:
        await log.close()


def _topic() -> str:
    return f"contract.{uuid.uuid4().hex[:12]}"


async def _consume_all(
    log: EventLog, group: str, topic: str, expected: int, timeout: float = 20.0
) -> list[ConsumedRecord]:
    consumer = log.consumer(group, [topic])
    await consumer.start()
    got: list[ConsumedRecord] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < expected and asyncio.get_running_loop().time() < deadline:
            got.extend(await consumer.getmany(max_records=100, timeout=0.5))
    finally:
        await consumer.close()
    return got


async def test_produce_returns_partition_and_contiguous_offsets(open_log: LogFactory) -> None:
    log = await open_log()
    topic = _topic()
    await log.ensure_topics([topic])
    records = [ProduceRecord(topic, b"unit\x1fobj-1", f"v{i}".encode()) for i in range(5)]
    placed = await log.produce(records)
    partitions = {tp for tp, _ in placed}
    assert partitions == {TopicPartition(topic, partition_for(b"unit\x1fobj-1", 3))}
    assert [offset for _, offset in placed] == [0, 1, 2, 3, 4]
    # A later call's records come after; on Kafka a transaction marker lies between.
    more = await log.produce([ProduceRecord(topic, b"unit\x1fobj-1", b"v5")])
    assert more[0][1] >= 5


async def test_records_round_trip_with_key_value_and_headers(open_log: LogFactory) -> None:
    log = await open_log()
    topic = _topic()
    await log.ensure_topics([topic])
    headers = (("event_id", b"e-1"), ("trace_id", b"t-\x00\xff"))
    await log.produce([ProduceRecord(topic, b"k", b"\x00value\xff", headers)])
    [record] = await _consume_all(log, "g", topic, 1)
    assert (record.key, record.value, record.headers) == (b"k", b"\x00value\xff", headers)
    assert record.header("event_id") == b"e-1"
    assert record.header("missing") is None
    assert record.offset == 0


async def test_one_key_stays_in_order_across_batches(open_log: LogFactory) -> None:
    log = await open_log()
    topic = _topic()
    await log.ensure_topics([topic])
    for batch in range(4):
        await log.produce(
            [ProduceRecord(topic, f"key-{k}".encode(), f"{batch}".encode()) for k in range(6)]
        )
    records = await _consume_all(log, "order", topic, 24)
    assert len(records) == 24
    for k in range(6):
        values = [r.value for r in records if r.key == f"key-{k}".encode()]
        assert values == [b"0", b"1", b"2", b"3"]


async def test_end_offsets_lie_after_every_record(open_log: LogFactory) -> None:
    log = await open_log()
    topic = _topic()
    await log.ensure_topics([topic])
    placed = await log.produce([ProduceRecord(topic, f"k{i}".encode(), b"x") for i in range(10)])
    ends = await log.end_offsets(topic)
    last: dict[TopicPartition, int] = {}
    for tp, offset in placed:
        last[tp] = max(last.get(tp, -1), offset)
    assert set(ends) == {TopicPartition(topic, p) for p in range(3)}
    for tp, end in ends.items():
        # One more than the last record; on Kafka also past the transaction's commit marker.
        assert end >= last.get(tp, -1) + 1
        assert end <= last.get(tp, -1) + 2


async def test_positions_step_over_what_is_never_returned(open_log: LogFactory) -> None:
    """After every record has been read, each position is the partition's end offset, also where
    a transaction marker (Kafka) follows the last record: offsets stored from positions lag 0."""
    log = await open_log()
    topic = _topic()
    await log.ensure_topics([topic])
    for batch in range(3):
        await log.produce([ProduceRecord(topic, f"k{i}".encode(), b"x") for i in range(batch, 9)])
    ends = await log.end_offsets(topic)
    consumer = log.consumer("stepper", [topic])
    await consumer.start()
    try:
        got: list[ConsumedRecord] = []
        deadline = asyncio.get_running_loop().time() + 20
        while asyncio.get_running_loop().time() < deadline:
            more = await consumer.getmany(max_records=100, timeout=0.5)
            got.extend(more)
            if not more and consumer.positions() == {tp: n for tp, n in ends.items()}:
                break
        assert len(got) == 9 + 8 + 7
        assert consumer.positions() == ends
    finally:
        await consumer.close()


async def test_committed_offsets_survive_a_restart(open_log: LogFactory) -> None:
    topic = _topic()
    first = await open_log()
    await first.ensure_topics([topic])
    await first.produce([ProduceRecord(topic, b"same", f"{i}".encode()) for i in range(6)])
    consumer = first.consumer("survivor", [topic])
    await consumer.start()
    got: list[ConsumedRecord] = []
    while len(got) < 3:
        got.extend(await consumer.getmany(max_records=3 - len(got), timeout=1.0))
    tp = got[0].topic_partition
    await consumer.commit({tp: got[-1].offset + 1})
    await consumer.close()
    await first.close()

    second = await open_log()
    consumer = second.consumer("survivor", [topic])
    await consumer.start()
    assert await consumer.committed(tp) == 3
    rest: list[ConsumedRecord] = []
    deadline = asyncio.get_running_loop().time() + 20
    while len(rest) < 3 and asyncio.get_running_loop().time() < deadline:
        rest.extend(await consumer.getmany(max_records=10, timeout=0.5))
    await consumer.close()
    assert [r.value for r in rest] == [b"3", b"4", b"5"]


async def test_groups_consume_independently(open_log: LogFactory) -> None:
    log = await open_log()
    topic = _topic()
    await log.ensure_topics([topic])
    await log.produce([ProduceRecord(topic, f"k{i}".encode(), b"x") for i in range(4)])
    a = await _consume_all(log, "group-a", topic, 4)
    b = await _consume_all(log, "group-b", topic, 4)
    assert len(a) == len(b) == 4


async def test_on_assign_positions_win_over_committed_offsets(open_log: LogFactory) -> None:
    log = await open_log()
    topic = _topic()
    await log.ensure_topics([topic])
    placed = await log.produce([ProduceRecord(topic, b"one", f"{i}".encode()) for i in range(5)])
    tp = placed[0][0]
    seen: list[frozenset[TopicPartition]] = []

    async def from_offset_two(assigned: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        seen.append(assigned)
        return {tp: 2}

    consumer = log.consumer("seeker", [topic], on_assign=from_offset_two)
    await consumer.start()
    got: list[ConsumedRecord] = []
    deadline = asyncio.get_running_loop().time() + 20
    while len(got) < 3 and asyncio.get_running_loop().time() < deadline:
        got.extend(await consumer.getmany(max_records=10, timeout=0.5))
    await consumer.close()
    assert [r.value for r in got] == [b"2", b"3", b"4"]
    assert tp in seen[0]


async def test_seek_rewinds(open_log: LogFactory) -> None:
    log = await open_log()
    topic = _topic()
    await log.ensure_topics([topic])
    placed = await log.produce([ProduceRecord(topic, b"one", f"{i}".encode()) for i in range(3)])
    tp = placed[0][0]
    consumer = log.consumer("rewinder", [topic])
    await consumer.start()
    got: list[ConsumedRecord] = []
    deadline = asyncio.get_running_loop().time() + 20
    while len(got) < 3 and asyncio.get_running_loop().time() < deadline:
        got.extend(await consumer.getmany(max_records=10, timeout=0.5))
    await consumer.seek(tp, 1)
    again: list[ConsumedRecord] = []
    while len(again) < 2 and asyncio.get_running_loop().time() < deadline:
        again.extend(await consumer.getmany(max_records=10, timeout=0.5))
    await consumer.close()
    assert [r.value for r in again] == [b"1", b"2"]


async def test_getmany_waits_for_new_records_and_times_out_when_none(
    open_log: LogFactory,
) -> None:
    log = await open_log()
    topic = _topic()
    await log.ensure_topics([topic])
    consumer = log.consumer("waiter", [topic])
    await consumer.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await consumer.getmany(max_records=10, timeout=0.3) == []
    assert loop.time() - started >= 0.25

    async def produce_later() -> None:
        await asyncio.sleep(0.2)
        await log.produce([ProduceRecord(topic, b"k", b"late")])

    producer = asyncio.create_task(produce_later())
    got: list[ConsumedRecord] = []
    deadline = loop.time() + 20
    while not got and loop.time() < deadline:
        got = await consumer.getmany(max_records=10, timeout=1.0)
    await producer
    await consumer.close()
    assert [r.value for r in got] == [b"late"]


async def test_ping_answers_when_the_log_is_up(open_log: LogFactory) -> None:
    log = await open_log()
    await log.ping()


def _keys_for_each_partition(partitions: int) -> list[bytes]:
    keys: dict[int, bytes] = {}
    i = 0
    while len(keys) < partitions:
        key = f"key-{i}".encode()
        keys.setdefault(partition_for(key, partitions), key)
        i += 1
    return [keys[p] for p in range(partitions)]


@pytest.mark.kafka
@pytest.mark.parametrize("transactions", [True, False], ids=["transactions", "without"])
async def test_a_failed_produce_leaves_nothing_readable_on_kafka(transactions: bool) -> None:
    """A call whose records go to three partitions, one of which refuses its batch (larger than
    the topic allows): with transactions a read_committed consumer sees none of the call; the
    control without them shows the failure lands half way (two records readable)."""
    bootstrap = require_service("INTAKE_TEST_KAFKA_BOOTSTRAP", "Apache Kafka")
    topic = _topic()
    small = KafkaEventLog(bootstrap, default_partitions=3, max_request_size=64 * 1024)
    await small.start()
    try:
        await small.ensure_topics([topic])  # max.message.bytes 64 KiB
    finally:
        await small.close()
    log = KafkaEventLog(bootstrap, default_partitions=3, transactions=transactions)
    await log.start()
    try:
        first, second, third = _keys_for_each_partition(3)
        records = [
            ProduceRecord(topic, first, b"fits"),
            ProduceRecord(topic, second, b"x" * (200 * 1024)),  # refused by the broker
            ProduceRecord(topic, third, b"fits"),
        ]
        with pytest.raises(LogUnavailableError):
            await log.produce(records)
        # The same log still produces: a failed transaction's producer was replaced.
        await log.produce([ProduceRecord(topic, first, b"after")])
        got = await _consume_all(log, f"atomic-{transactions}", topic, 3, timeout=5.0)
    finally:
        await log.close()
    values = sorted(r.value for r in got)
    assert values == ([b"after"] if transactions else [b"after", b"fits", b"fits"])
