"""The Kafka adapter: the event-log port on Apache Kafka, through aiokafka.

Producing uses one idempotent producer (``acks="all"``, ``enable_idempotence=True``): ``produce``
returns only once every in-sync replica has each record, and the producer's own retries can neither
duplicate nor reorder records within a partition, so one call's records for a key get increasing
offsets in the order given (another call's batch may fall between two of its batches). Records
are partitioned here with :func:`eventlog.partitioner.partition_for`
(Kafka's default murmur2 partitioner), the function the embedded log uses too, so an object's
events land in the same partition number whichever adapter wrote them.

Every call that talks to the broker is bounded by ``timeout`` seconds (``ping`` by
``ping_timeout``); a Kafka error, a lost connection or the timeout becomes
:class:`~eventlog.port.LogUnavailableError`, so a dead broker gives the caller a prompt 503 instead
of a hang.

A ``produce`` call is atomic, as in the embedded log: its records (bound for several partitions and
topics, so several batches) are written in one Kafka transaction, on a producer from a pool of
transactional producers (:mod:`eventlog.kafka_transactions`), and committed only once every batch
is acknowledged. Consumers read ``read_committed``, so they see all of a call's records or none.
When ``produce`` raises :class:`~eventlog.port.LogUnavailableError`, nothing of it will ever be
read: the only exception is a commit that was sent but not answered within the transaction
timeout (the error then says so), when the whole call may still become visible. With
``transactions=False`` (for measuring their cost) a failed call may leave part of its records.

``ensure_topics`` creates missing topics with ``default_partitions`` partitions, allowing records
of ``max_request_size`` bytes, and waits until the broker's metadata shows a leader for every
partition, so producing and consuming can start at once. ``produce``, ``end_offsets`` and
consumers ensure their topics first, as the embedded log does (never relying on the broker's
auto-creation, which would pick its own partition count).

A consumer is a member of a Kafka consumer group: partitions are spread over the group's members
and may move between them on rebalance. Offsets are committed only explicitly
(``enable_auto_commit=False``), a partition without a committed offset starts at the beginning, and
only committed data is read (``read_committed``). On every assignment ``on_assign`` is awaited
before any record is fetched and its positions are sought, so consumers that keep offsets with their
own state resume exactly there. ``start`` returns only after the first assignment has been handled,
so ``assignment()`` is meaningful right away, as with the embedded log. If ``on_assign`` fails,
the consumer stops fetching and every later ``getmany`` raises that error: reading on from the
group's committed offsets instead would silently skip or repeat records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ConsumerStoppedError,
    KafkaError,
    NoError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as KafkaTopicPartition

from eventlog.kafka_transactions import TransactionalProducers
from eventlog.partitioner import partition_for
from eventlog.port import (
    ConsumedRecord,
    LogUnavailableError,
    OnAssign,
    ProduceRecord,
    TopicPartition,
)

log = logging.getLogger(__name__)

# The largest record the service sends (15 MB submissions plus key and headers) ...
MAX_RECORD_BYTES = 16 * 1024 * 1024
# ... and the request, batch and fetch size that carries one (record framing and batch header).
DEFAULT_MAX_REQUEST_SIZE = MAX_RECORD_BYTES + 1024 * 1024
# How the producer batches records (aiokafka's names). No linger: the records of a message are
# handed over at once (see ``produce``), so waiting only adds latency (one-item messages' p50 went
# from about 32 to 20 ms). Batches of up to 1 MiB: a 500-item message's share of one partition
# (~70 KB) travels as one batch; at 16 KiB it was five or more, and two gateways under full load
# queued so many that some waited past the produce timeout (503). Measured with
# bench/bench_gateway.py (bench/RESULTS.md).
PRODUCER_SETTINGS: dict[str, int] = {"linger_ms": 0, "max_batch_size": 1048576}

# What a broker call may raise when the log is unreachable, overloaded or mid-rebalance.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    KafkaError,
    ConsumerStoppedError,
    OSError,
    TimeoutError,
)


@contextlib.asynccontextmanager
async def _broker_call(what: str, timeout: float) -> AsyncIterator[None]:
    """Bound a broker call by ``timeout`` and turn its failures into LogUnavailableError."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except _UNAVAILABLE as exc:
        raise LogUnavailableError(f"kafka: {what}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "")
    if text.startswith(name):
        return text
    return f"{name}: {text}" if text else name


def _partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's partitioner hook, delegating to the partitioner the embedded log uses."""
    ordered = sorted(all_partitions)
    return ordered[partition_for(key or b"", len(ordered))]


def _kafka_tp(tp: TopicPartition) -> Any:
    return KafkaTopicPartition(tp.topic, tp.partition)


def _port_tp(tp: Any) -> TopicPartition:
    return TopicPartition(str(tp.topic), int(tp.partition))


def _consumed(record: Any) -> ConsumedRecord:
    return ConsumedRecord(
        topic=str(record.topic),
        partition=int(record.partition),
        offset=int(record.offset),
        key=b"" if record.key is None else bytes(record.key),
        value=b"" if record.value is None else bytes(record.value),
        headers=tuple(
            (str(name), b"" if value is None else bytes(value))
            for name, value in record.headers or ()
        ),
        timestamp_ms=int(record.timestamp),
    )


class KafkaEventLog:
    """The event log on a Kafka cluster.

    ``timeout`` bounds every broker call (connecting, creating topics, producing, committing);
    ``request_timeout_ms`` is aiokafka's own per-request limit, kept at or below it so that a
    batch the producer could not deliver expires about when the caller gives up on it.
    ``max_request_size`` is also the topics' ``max.message.bytes`` and the consumers' partition
    fetch size, so one record of up to ``MAX_RECORD_BYTES`` goes through end to end.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        default_partitions: int = 3,
        replication_factor: int = 1,
        client_id: str = "register-intake",
        request_timeout_ms: int = 10_000,
        max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
        compression_type: str | None = None,
        linger_ms: int = PRODUCER_SETTINGS["linger_ms"],
        max_batch_size: int = PRODUCER_SETTINGS["max_batch_size"],
        timeout: float = 10.0,
        ping_timeout: float = 2.0,
        assignment_timeout: float = 30.0,
        transactions: bool = True,
        transactional_id_prefix: str | None = None,
        transactional_producers: int = 8,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._default_partitions = default_partitions
        self._replication_factor = replication_factor
        self._client_id = client_id
        self._request_timeout_ms = request_timeout_ms
        self._max_request_size = max_request_size
        self._compression_type = compression_type
        self._linger_ms = linger_ms
        self._max_batch_size = max_batch_size
        self._timeout = timeout
        self._ping_timeout = ping_timeout
        self._assignment_timeout = assignment_timeout
        self._producer: Any = None
        self._admin: Any = None
        self._offsets: Any = None  # a group-less consumer, only for end offsets
        self._ready_topics: set[str] = set()
        self._transactions = transactions
        # Unique per process by default (two gateways on one host must not fence each other);
        # an operator may give each replica a stable prefix (a StatefulSet's pod name), so a
        # restarted replica aborts its predecessor's open transactions at once.
        self._transactional_id_prefix = (
            transactional_id_prefix or f"{client_id}-{socket.gethostname()}-{os.getpid()}"
        )
        self._transactional_producers = transactional_producers
        # A transaction open longer than this is aborted by the coordinator: long enough for a
        # produce and its commit, short enough that one a killed process left open holds
        # read_committed consumers back for seconds, not Kafka's default minute.
        self._transaction_timeout = max(2 * timeout + 5, 10.0)
        self._pool: TransactionalProducers | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap_servers

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def max_request_size(self) -> int:
        return self._max_request_size

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def assignment_timeout(self) -> float:
        return self._assignment_timeout

    @property
    def transactional_id_prefix(self) -> str | None:
        return self._transactional_id_prefix if self._transactions else None

    def _producer_settings(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self._bootstrap_servers,
            "client_id": self._client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": self._linger_ms,
            "max_batch_size": self._max_batch_size,
            "compression_type": self._compression_type,
            "max_request_size": self._max_request_size,
            "request_timeout_ms": self._request_timeout_ms,
            "partitioner": _partitioner,
        }

    def _transactional_producer(self, transactional_id: str) -> Any:
        return AIOKafkaProducer(
            **self._producer_settings(),
            transactional_id=transactional_id,
            transaction_timeout_ms=round(self._transaction_timeout * 1000),
        )

    async def _stop_quietly(self, client: Any) -> None:
        await _stop_all(client.stop, timeout=self._timeout)

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(**self._producer_settings())
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            request_timeout_ms=self._request_timeout_ms,
        )
        offsets = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=self._request_timeout_ms,
        )
        try:
            async with _broker_call(f"connect to {self._bootstrap_servers}", self._timeout):
                await producer.start()
                await admin.start()
                await offsets.start()
        except BaseException:
            await _stop_all(producer.stop, admin.close, offsets.stop, timeout=self._timeout)
            raise
        self._producer, self._admin, self._offsets = producer, admin, offsets
        if self._transactions:
            self._pool = TransactionalProducers(
                self._transactional_producer,
                self._stop_quietly,
                prefix=self._transactional_id_prefix,
                size=self._transactional_producers,
            )

    async def close(self) -> None:
        producer, admin, offsets = self._producer, self._admin, self._offsets
        pool, self._pool = self._pool, None
        self._producer = self._admin = self._offsets = None
        if pool is not None:
            await pool.close()
        if producer is None:
            return
        # The producer first: stopping it flushes whatever is still in flight.
        await _stop_all(producer.stop, admin.close, offsets.stop, timeout=self._timeout)

    def _started(self) -> tuple[Any, Any, Any]:
        if self._producer is None:
            raise LogUnavailableError("kafka log is not started")
        return self._producer, self._admin, self._offsets

    def _topic_configs(self) -> dict[str, str]:
        configs = {"max.message.bytes": str(self._max_request_size)}
        if self._replication_factor > 1:
            # acks=all then needs all but one replica: one broker may be down.
            configs["min.insync.replicas"] = str(self._replication_factor - 1)
        return configs

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        missing = [t for t in dict.fromkeys(topics) if t not in self._ready_topics]
        if not missing:
            return
        _, admin, _ = self._started()
        new_topics = [
            NewTopic(
                name=topic,
                num_partitions=self._default_partitions,
                replication_factor=self._replication_factor,
                topic_configs=self._topic_configs(),
            )
            for topic in missing
        ]
        async with _broker_call(f"create topics {missing}", self._timeout):
            response = await admin.create_topics(new_topics)
            failures = []
            for topic, code, *message in response.topic_errors:
                error = for_code(code)
                if error is not NoError and error is not TopicAlreadyExistsError:
                    failures.append(f"{topic}: {error.__name__} {message[0] if message else ''}")
            if failures:
                raise LogUnavailableError(f"kafka could not create topics: {'; '.join(failures)}")
            await _wait_for_leaders(admin, missing)
        self._ready_topics.update(missing)

    async def produce(self, records: Sequence[ProduceRecord]) -> list[tuple[TopicPartition, int]]:
        if not records:
            return []
        await self.ensure_topics([r.topic for r in records])
        producer, _, _ = self._started()
        what = f"produce {len(records)} records"
        if self._pool is None:
            async with _broker_call(what, self._timeout):
                return await self._send(producer, records)
        async with contextlib.AsyncExitStack() as stack:
            async with _broker_call(what, self._timeout):  # waiting for a pooled producer too
                transaction = await stack.enter_async_context(self._pool.transaction())
                placed = await self._send(transaction.producer, records)
            # Once the commit is sent, its answer is worth waiting for: the coordinator may
            # have committed. It has decided by the transaction timeout (committed, or aborted
            # the transaction as timed out), and the producer, retrying against whichever
            # broker is coordinator by then, learns which; only a cluster unreachable for that
            # long leaves the outcome unknown.
            async with _broker_call(
                f"commit {len(records)} records (unconfirmed: they may still be committed)",
                self._transaction_timeout,
            ):
                await transaction.commit()
        return placed

    async def _send(
        self, producer: Any, records: Sequence[ProduceRecord]
    ) -> list[tuple[TopicPartition, int]]:
        """Send ``records`` on ``producer``; where each went once every batch is acknowledged."""
        # Records are partitioned here and handed to the producer as whole batches, one
        # partition's in order: per record, aiokafka's send() (its checks, partitioning
        # and a future each) cost more than appending to a batch (bench/RESULTS.md).
        counts = {t: len(await producer.partitions_for(t)) for t in {r.topic for r in records}}
        by_partition: dict[tuple[str, int], list[int]] = {}
        for i, r in enumerate(records):
            tp = (r.topic, partition_for(r.key, counts[r.topic]))
            by_partition.setdefault(tp, []).append(i)
        sends = [
            self._send_batches(producer, topic, partition, [records[i] for i in indexes])
            for (topic, partition), indexes in by_partition.items()
        ]
        # One partition (a one-item message): awaited here, without a task and the event
        # loop turn that starting it takes.
        sent = [await sends[0]] if len(sends) == 1 else await asyncio.gather(*sends)
        placed: dict[int, tuple[TopicPartition, int]] = {}  # record index → where it went
        for ((topic, partition), indexes), offsets in zip(by_partition.items(), sent, strict=True):
            tp = TopicPartition(topic, partition)
            placed.update((i, (tp, offset)) for i, offset in zip(indexes, offsets, strict=True))
        return [placed[i] for i in range(len(records))]

    @staticmethod
    async def _send_batches(
        producer: Any, topic: str, partition: int, records: list[ProduceRecord]
    ) -> list[int]:
        """Send one partition's records as full batches, in order; their offsets once the broker
        has acknowledged every batch. Cancelling (on timeout) does not unsend a queued batch."""
        acknowledged: list[tuple[Any, int]] = []  # (future, records in the batch)
        batch, in_batch = producer.create_batch(), 0
        for r in records:
            appended = batch.append(
                key=r.key, value=r.value, timestamp=None, headers=list(r.headers)
            )
            if appended is None:  # full: send it, start the next (a first record always fits)
                acknowledged.append(
                    (await producer.send_batch(batch, topic, partition=partition), in_batch)
                )
                batch, in_batch = producer.create_batch(), 0
                batch.append(key=r.key, value=r.value, timestamp=None, headers=list(r.headers))
            in_batch += 1
        acknowledged.append(
            (await producer.send_batch(batch, topic, partition=partition), in_batch)
        )
        offsets: list[int] = []
        for future, count in acknowledged:
            base = int((await future).offset)
            offsets.extend(range(base, base + count))
        return offsets

    async def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        await self.ensure_topics([topic])
        producer, _, offsets = self._started()
        async with _broker_call(f"end offsets of {topic}", self._timeout):
            partitions = await producer.partitions_for(topic)
            ends = await offsets.end_offsets([KafkaTopicPartition(topic, p) for p in partitions])
        return {_port_tp(tp): int(offset) for tp, offset in ends.items()}

    async def ping(self) -> None:
        _, admin, _ = self._started()
        async with _broker_call(f"ping {self._bootstrap_servers}", self._ping_timeout):
            await admin.describe_topics([])  # a metadata request for no topics: brokers only

    def consumer(
        self, group: str, topics: Sequence[str], *, on_assign: OnAssign | None = None
    ) -> KafkaLogConsumer:
        return KafkaLogConsumer(self, group, tuple(topics), on_assign)


async def _wait_for_leaders(admin: Any, topics: list[str]) -> None:
    """Poll metadata until every partition of ``topics`` has a leader (the caller bounds it)."""
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(topics)
        ready = {
            str(t["topic"])
            for t in described
            if t["error_code"] == 0
            and t["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
        }
        if ready >= set(topics):
            return
        await asyncio.sleep(0.05)


async def _stop_all(*stops: Any, timeout: float) -> None:
    """Stop aiokafka clients, each bounded by ``timeout``; failures are logged, not raised.
    aiokafka's stop() can raise CancelledError of its own when a broker went away mid-call
    (aiokafka#647): that is a failure to close, not a cancellation of this task, which still
    goes through."""
    for stop in stops:
        try:
            async with asyncio.timeout(timeout):
                await stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            log.warning("closing a kafka client raised CancelledError (aiokafka#647)")
        except Exception as exc:
            log.warning("closing a kafka client failed: %s: %s", type(exc).__name__, exc)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, consumer: KafkaLogConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """Nothing to hand over: offsets are committed explicitly by the caller."""

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        await self._consumer._assigned(assigned)


class KafkaLogConsumer:
    """One member of a Kafka consumer group, reading committed records of ``topics``."""

    def __init__(
        self,
        event_log: KafkaEventLog,
        group: str,
        topics: tuple[str, ...],
        on_assign: OnAssign | None,
    ) -> None:
        self._log = event_log
        self._group = group
        self._topics = topics
        self._on_assign = on_assign
        self._consumer: Any = None
        self._first_assignment = asyncio.Event()
        self._assign_failure: BaseException | None = None

    async def start(self) -> None:
        if self._consumer is not None:
            return
        await self._log.ensure_topics(self._topics)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._log.bootstrap_servers,
            client_id=self._log.client_id,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=self._log.max_request_size,
        )
        # Subscribing before start() makes start() wait for the group's first assignment.
        consumer.subscribe(list(self._topics), listener=_Listener(self))
        self._consumer = consumer
        try:
            async with _broker_call(
                f"join group {self._group!r} for {list(self._topics)}",
                self._log.assignment_timeout,
            ):
                await consumer.start()
                # start() may return before the listener (and on_assign) has finished.
                await self._first_assignment.wait()
            self._raise_if_assign_failed()
        except BaseException:
            await self.close()
            raise

    async def _assigned(self, assigned: set[Any]) -> None:
        """The rebalance listener: let ``on_assign`` choose start positions, then seek there."""
        try:
            if self._on_assign is not None and self._assign_failure is None:
                tps = frozenset(_port_tp(tp) for tp in assigned)
                starts = await self._on_assign(tps)
                for tp, offset in starts.items():
                    if tp in tps and self._consumer is not None:
                        self._consumer.seek(_kafka_tp(tp), offset)
        except Exception as exc:
            log.error("on_assign failed for group %r: %s", self._group, exc)
            self._assign_failure = exc
            if self._consumer is not None:
                self._consumer.pause(*assigned)
        finally:
            self._first_assignment.set()

    def _raise_if_assign_failed(self) -> None:
        if self._assign_failure is not None:
            raise self._assign_failure

    def _running(self) -> Any:
        if self._consumer is None:
            raise LogUnavailableError("kafka consumer is not started")
        return self._consumer

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await _stop_all(consumer.stop, timeout=self._log.timeout)

    def assignment(self) -> frozenset[TopicPartition]:
        if self._consumer is None:
            return frozenset()
        return frozenset(_port_tp(tp) for tp in self._consumer.assignment())

    async def getmany(self, *, max_records: int, timeout: float) -> list[ConsumedRecord]:
        consumer = self._running()
        self._raise_if_assign_failed()
        try:
            batches: dict[Any, list[Any]] = await consumer.getmany(
                timeout_ms=max(0, round(timeout * 1000)), max_records=max_records
            )
        except _UNAVAILABLE as exc:
            raise LogUnavailableError(f"kafka: getmany: {_describe(exc)}") from exc
        # A rebalance while waiting may have failed on_assign: its records' positions are suspect.
        self._raise_if_assign_failed()
        return [_consumed(record) for tp in sorted(batches) for record in batches[tp]]

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assignment():
            raise ValueError(f"{tp} is not assigned to this consumer")
        self._running().seek(_kafka_tp(tp), offset)

    def positions(self) -> dict[TopicPartition, int]:
        consumer = self._consumer
        if consumer is None:
            return {}
        # aiokafka's subscription state: the position moves past control batches (transaction
        # markers) and aborted records as the fetched data is read.
        assignment = consumer._subscription.subscription.assignment
        found: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            state = assignment.state_value(tp)
            if state is not None and state.has_valid_position:
                found[_port_tp(tp)] = int(state.position)
        return found

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        consumer = self._running()
        # Kafka refuses commits for partitions this member no longer owns (after a rebalance):
        # that surfaces as LogUnavailableError, and the records will be read again.
        async with _broker_call(f"commit offsets of group {self._group!r}", self._log.timeout):
            await consumer.commit(
                {_kafka_tp(tp): OffsetAndMetadata(offset, "") for tp, offset in offsets.items()}
            )

    async def committed(self, tp: TopicPartition) -> int | None:
        consumer = self._running()
        async with _broker_call(f"committed offset of group {self._group!r}", self._log.timeout):
            offset = await consumer.committed(_kafka_tp(tp))
        return None if offset is None else int(offset)
