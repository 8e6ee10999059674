"""What the rest of the system may ask of an event log.

Two adapters implement it: :mod:`eventlog.embedded` (a durable SQLite file, for one-process
development and tests) and the Kafka adapter. Both pass the same contract suite in
``tests/contract/test_eventlog_contract.py``.

Semantics shared by every adapter:

* A topic has a fixed number of partitions; a record's partition is chosen from its key with
  Kafka's default partitioner (murmur2), so one key's records stay in order.
* ``produce`` returns only after the log has durably stored every record of the batch; when it
  cannot, it raises :class:`LogUnavailableError` (transient: the caller answers 503).
* Offsets in a partition start at 0 and grow by one per record.
* A consumer belongs to a group; the group's committed offset (the *next* offset to read) survives
  restarts. Consumers that keep offsets with their own state seek on assignment instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(slots=True)  # not frozen: one per event, and a frozen init costs 3× as much
class ProduceRecord:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class LogUnavailableError(Exception):
    """The log could not store or serve records now; retrying later may succeed."""


# Called with the partitions just assigned; returns where to start reading each one
# (a missing partition starts at the group's committed offset, or at the beginning).
OnAssign = Callable[[frozenset[TopicPartition]], Awaitable[Mapping[TopicPartition, int]]]


class LogConsumer(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def assignment(self) -> frozenset[TopicPartition]: ...

    async def getmany(self, *, max_records: int, timeout: float) -> list[ConsumedRecord]:
        """Records after the current positions, waiting up to ``timeout`` seconds for some."""
        ...

    async def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def positions(self) -> dict[TopicPartition, int]:
        """Each assigned partition's next offset to read, where known. After the records
        ``getmany`` returned it may lie beyond the last one's offset + 1: Kafka's transaction
        markers and aborted records take offsets but are never returned."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the group's next offsets to read."""
        ...

    async def committed(self, tp: TopicPartition) -> int | None: ...


class EventLog(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_topics(self, topics: Sequence[str]) -> None: ...

    async def produce(self, records: Sequence[ProduceRecord]) -> list[tuple[TopicPartition, int]]:
        """Store all records durably and return each one's partition and offset, in order."""
        ...

    async def end_offsets(self, topic: str) -> dict[TopicPartition, int]: ...

    async def ping(self) -> None:
        """Raise :class:`LogUnavailableError` when the log cannot be reached."""
        ...

    def consumer(
        self, group: str, topics: Sequence[str], *, on_assign: OnAssign | None = None
    ) -> LogConsumer: ...
