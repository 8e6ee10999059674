"""Transactional producers for the Kafka adapter: what makes one ``produce`` call atomic.

A call's records may go to several partitions (and topics), and Kafka stores each partition's
batch on its own; only a transaction makes them visible together. Consumers read with
``read_committed``, so they see a transaction's records once it commits and never if it aborts.

A transactional producer runs one transaction at a time, so concurrent requests share a
:class:`TransactionalProducers` pool of up to ``size`` producers, created when first needed (a
consumer process that produces now and then ends up with one, a busy gateway with several).
Each slot keeps its ``transactional.id`` (``<prefix>-<n>``) for the life of the process.

When anything goes wrong inside a transaction (a send, an acknowledgement, the commit, the time
limit or a cancellation) the slot's producer is not reused: a new producer with the same
transactional id is started in the background. Its ``InitProducerId`` makes the transaction
coordinator abort whatever the old one left open and bumps the epoch, which fences any of the old
producer's requests still in flight; only then is the slot handed out again. That is simpler and
safer than aborting on a producer whose requests may still be under way against a broker that
went away. A transaction nobody ends (the process was killed) is aborted by the coordinator after
``transaction_timeout_ms``, or at once when a process with the same prefix starts that slot again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

# How long a failed slot waits before trying to start its replacement again (doubling to 10 s).
REPLACE_BACKOFF_SECONDS = 0.5


class TransactionalProducers:
    """Up to ``size`` transactional producers for ``make(transactional_id)``; ``stop`` closes
    one producer (bounded and quiet, see ``eventlog.kafka._stop_all``)."""

    def __init__(
        self,
        make: Callable[[str], Any],
        stop: Callable[[Any], Awaitable[None]],
        *,
        prefix: str,
        size: int,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one producer")
        self._make = make
        self._stop = stop
        self._prefix = prefix
        self._size = size
        self._idle: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self._created = 0  # slots numbered 0..created-1: idle, in use or being replaced
        self._replacing: set[asyncio.Task[None]] = set()  # slots being started again
        self._stopping: set[asyncio.Task[None]] = set()  # replaced producers being closed
        self._live: dict[int, Any] = {}  # slot -> its current producer, for close()
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    def transactional_id(self, slot: int) -> str:
        return f"{self._prefix}-{slot}"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A begun transaction. Unless the caller commits it (and the commit succeeds) before the
        block ends, the slot's producer is replaced, which aborts the transaction. The caller
        bounds the time, waiting for a free producer included."""
        slot, producer = await self._acquire()
        transaction = Transaction(producer)
        try:
            await producer.begin_transaction()
            yield transaction
        finally:
            if transaction.committed and not self._closed:
                self._idle.put_nowait((slot, producer))
            else:
                self._replace(slot, producer)

    async def _acquire(self) -> tuple[int, Any]:
        if self._closed:
            raise RuntimeError("the transactional producers are closed")
        with contextlib.suppress(asyncio.QueueEmpty):
            return self._idle.get_nowait()
        if self._created < self._size:
            slot, self._created = self._created, self._created + 1
            try:
                return slot, await self._start(slot)
            except BaseException:
                # Not started: the slot is tried again in the background, like a failed one.
                self._replace(slot, None)
                raise
        return await self._idle.get()

    async def _start(self, slot: int) -> Any:
        producer = self._make(self.transactional_id(slot))
        self._live[slot] = producer
        try:
            await producer.start()  # InitProducerId: fences the slot's previous producer
        except BaseException:
            self._live.pop(slot, None)
            await self._stop(producer)
            raise
        return producer

    def _replace(self, slot: int, old: Any) -> None:
        if old is not None:
            self._live.pop(slot, None)
            self._stop_later(old)
        if not self._closed:
            task = asyncio.ensure_future(self._replace_later(slot))
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)

    def _stop_later(self, producer: Any) -> None:
        task = asyncio.ensure_future(self._stop(producer))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _replace_later(self, slot: int) -> None:
        """Start the slot's next producer (same transactional id, so the old one's transaction is
        aborted and the old producer fenced) and make the slot idle again."""
        backoff = REPLACE_BACKOFF_SECONDS
        while not self._closed:
            try:
                producer = await self._start(slot)
            except Exception as exc:
                log.warning(
                    "transactional producer %s could not start: %s: %s; retrying in %.1fs",
                    self.transactional_id(slot),
                    type(exc).__name__,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if self._closed:
                await self._stop(producer)
                return
            self._idle.put_nowait((slot, producer))
            return

    async def close(self) -> None:
        """Stop every producer; replacements under way are cancelled, closings awaited."""
        self._closed = True
        for task in list(self._replacing):
            task.cancel()
        await asyncio.gather(*self._replacing, return_exceptions=True)
        live, self._live = list(self._live.values()), {}
        for producer in live:
            await self._stop(producer)
        await asyncio.gather(*self._stopping, return_exceptions=True)


class Transaction:
    """One begun transaction on a pooled producer: send with ``producer``, then ``commit``."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.committed = False

    async def commit(self) -> None:
        await self.producer.commit_transaction()
        self.committed = True
