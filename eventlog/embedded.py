"""The embedded event log: a durable SQLite file with Kafka's topic/partition/offset semantics.

One writer connection stores produced batches in a single ``BEGIN IMMEDIATE`` transaction with
``synchronous=FULL``, so a batch is either wholly on disk or absent, and it is on disk before
``produce`` returns. Consumers read with their own connections. Consumers in this process are woken
as soon as a batch is stored; records written by another process are seen within
``poll_interval`` seconds.

Group membership is deliberately simple: every member of a group is assigned every partition of its
topics. That is right for one ``intake serve`` process; scaling out is what Kafka is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiosqlite
import orjson

from eventlog.partitioner import partition_for
from eventlog.port import (
    ConsumedRecord,
    LogUnavailableError,
    OnAssign,
    ProduceRecord,
    TopicPartition,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL REFERENCES topics(name),
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    headers BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"""


async def _connect(path: Path) -> aiosqlite.Connection:
    # Refuse before a connection thread exists that would outlive us.
    if await asyncio.to_thread(path.is_dir):
        raise sqlite3.OperationalError(f"{path} is a directory")
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("PRAGMA busy_timeout=10000")
        await conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error:
        await conn.close()  # stop its thread before the error travels up
        raise
    return conn


def _encode_headers(headers: tuple[tuple[str, bytes], ...]) -> bytes:
    return orjson.dumps([[name, value.hex()] for name, value in headers])


def _decode_headers(blob: bytes) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, bytes.fromhex(value)) for name, value in orjson.loads(blob))


class EmbeddedEventLog:
    def __init__(
        self, path: Path, *, default_partitions: int = 3, poll_interval: float = 0.1
    ) -> None:
        self._path = path
        self._default_partitions = default_partitions
        self._poll_interval = poll_interval
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._partition_counts: dict[str, int] = {}
        self._stored = asyncio.Event()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def poll_interval(self) -> float:
        return self._poll_interval

    async def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await _connect(self._path)
            await self._writer.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            await self.close()
            raise LogUnavailableError(f"embedded log at {self._path}: {exc}") from exc

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    def _conn(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise LogUnavailableError("embedded log is not started")
        return self._writer

    async def connect_reader(self) -> aiosqlite.Connection:
        return await _connect(self._path)

    def stored_event(self) -> asyncio.Event:
        """An event that is set the next time a batch is stored by this process."""
        return self._stored

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        async with self._write_lock:
            conn = self._conn()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                for topic in topics:
                    await self._create_topic(conn, topic)
                await conn.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(conn)
                raise LogUnavailableError(f"embedded log: {exc}") from exc

    async def _create_topic(self, conn: aiosqlite.Connection, topic: str) -> int:
        async with conn.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)) as cur:
            row = await cur.fetchone()
        if row is not None:
            count = int(row[0])
        else:
            count = self._default_partitions
            await conn.execute(
                "INSERT INTO topics (name, partitions) VALUES (?, ?)", (topic, count)
            )
            await conn.executemany(
                "INSERT INTO partitions (topic, partition, next_offset) VALUES (?, ?, 0)",
                [(topic, p) for p in range(count)],
            )
        self._partition_counts[topic] = count
        return count

    async def partitions_for(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            await self.ensure_topics([topic])
            count = self._partition_counts[topic]
        return count

    async def produce(self, records: Sequence[ProduceRecord]) -> list[tuple[TopicPartition, int]]:
        if not records:
            return []
        for topic in {r.topic for r in records}:
            await self.partitions_for(topic)
        now_ms = int(time.time() * 1000)
        async with self._write_lock:
            conn = self._conn()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                placed: list[tuple[TopicPartition, int]] = []
                next_offsets: dict[TopicPartition, int] = {}
                rows = []
                for record in records:
                    tp = TopicPartition(
                        record.topic,
                        partition_for(record.key, self._partition_counts[record.topic]),
                    )
                    if tp not in next_offsets:
                        async with conn.execute(
                            "SELECT next_offset FROM partitions WHERE topic = ? AND partition = ?",
                            tp,
                        ) as cur:
                            row = await cur.fetchone()
                        assert row is not None, f"partition {tp} missing"
                        next_offsets[tp] = int(row[0])
                    offset = next_offsets[tp]
                    next_offsets[tp] = offset + 1
                    placed.append((tp, offset))
                    rows.append(
                        (
                            tp.topic,
                            tp.partition,
                            offset,
                            record.key,
                            record.value,
                            _encode_headers(record.headers),
                            now_ms,
                        )
                    )
                await conn.executemany(
                    'INSERT INTO records (topic, partition, "offset", key, value, headers,'
                    " timestamp_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                await conn.executemany(
                    "UPDATE partitions SET next_offset = ? WHERE topic = ? AND partition = ?",
                    [(nxt, tp.topic, tp.partition) for tp, nxt in next_offsets.items()],
                )
                await conn.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(conn)
                raise LogUnavailableError(f"embedded log could not store records: {exc}") from exc
        stored, self._stored = self._stored, asyncio.Event()
        stored.set()
        return placed

    async def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        await self.partitions_for(topic)
        async with self._conn().execute(
            "SELECT partition, next_offset FROM partitions WHERE topic = ?", (topic,)
        ) as cur:
            return {TopicPartition(topic, int(p)): int(n) for p, n in await cur.fetchall()}

    async def ping(self) -> None:
        try:
            async with self._conn().execute("SELECT count(*) FROM topics") as cur:
                await cur.fetchone()
        except sqlite3.Error as exc:
            raise LogUnavailableError(f"embedded log: {exc}") from exc

    async def commit_group(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        async with self._write_lock:
            conn = self._conn()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                await conn.executemany(
                    "INSERT INTO group_offsets (grp, topic, partition, next_offset)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, partition)"
                    " DO UPDATE SET next_offset = excluded.next_offset",
                    [(group, tp.topic, tp.partition, off) for tp, off in offsets.items()],
                )
                await conn.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(conn)
                raise LogUnavailableError(f"embedded log could not commit: {exc}") from exc

    async def committed_group(self, group: str, tp: TopicPartition) -> int | None:
        async with self._conn().execute(
            "SELECT next_offset FROM group_offsets WHERE grp = ? AND topic = ? AND partition = ?",
            (group, tp.topic, tp.partition),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    def consumer(
        self, group: str, topics: Sequence[str], *, on_assign: OnAssign | None = None
    ) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, group, tuple(topics), on_assign)


async def _rollback(conn: aiosqlite.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # no transaction was open: nothing to undo
        await conn.execute("ROLLBACK")


class EmbeddedConsumer:
    def __init__(
        self,
        log: EmbeddedEventLog,
        group: str,
        topics: tuple[str, ...],
        on_assign: OnAssign | None,
    ) -> None:
        self._log = log
        self._group = group
        self._topics = topics
        self._on_assign = on_assign
        self._reader: aiosqlite.Connection | None = None
        self._positions: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        try:
            self._reader = await self._log.connect_reader()
        except sqlite3.Error as exc:
            raise LogUnavailableError(f"embedded log: {exc}") from exc
        assigned: set[TopicPartition] = set()
        for topic in self._topics:
            count = await self._log.partitions_for(topic)
            assigned.update(TopicPartition(topic, p) for p in range(count))
        for tp in sorted(assigned):
            committed = await self._log.committed_group(self._group, tp)
            self._positions[tp] = committed if committed is not None else 0
        if self._on_assign is not None:
            starts = await self._on_assign(frozenset(assigned))
            for tp, offset in starts.items():
                self._positions[tp] = offset

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self._positions:
            raise ValueError(f"{tp} is not assigned to this consumer")
        self._positions[tp] = offset

    def positions(self) -> dict[TopicPartition, int]:
        return dict(self._positions)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        await self._log.commit_group(self._group, offsets)

    async def committed(self, tp: TopicPartition) -> int | None:
        return await self._log.committed_group(self._group, tp)

    async def getmany(self, *, max_records: int, timeout: float) -> list[ConsumedRecord]:
        deadline = time.monotonic() + timeout
        while True:
            wake = self._log.stored_event()
            records = await self._read(max_records)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                return records
            # On timeout, poll again: another process may have written.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(remaining, self._log.poll_interval))

    async def _read(self, max_records: int) -> list[ConsumedRecord]:
        if self._reader is None:
            raise LogUnavailableError("consumer is not started")
        out: list[ConsumedRecord] = []
        try:
            for tp, position in sorted(self._positions.items()):
                if len(out) >= max_records:
                    break
                async with self._reader.execute(
                    'SELECT "offset", key, value, headers, timestamp_ms FROM records'
                    ' WHERE topic = ? AND partition = ? AND "offset" >= ?'
                    ' ORDER BY "offset" LIMIT ?',
                    (tp.topic, tp.partition, position, max_records - len(out)),
                ) as cur:
                    rows = await cur.fetchall()
                for offset, key, value, headers, ts in rows:
                    out.append(
                        ConsumedRecord(
                            tp.topic,
                            tp.partition,
                            int(offset),
                            key,
                            value,
                            _decode_headers(headers),
                            int(ts),
                        )
                    )
                if out and out[-1].topic_partition == tp:
                    self._positions[tp] = out[-1].offset + 1
        except sqlite3.Error as exc:
            raise LogUnavailableError(f"embedded log: {exc}") from exc
        return out
