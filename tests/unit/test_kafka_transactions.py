"""The pool of transactional producers, on its own: how many run at once, what happens to a slot
whose transaction failed, closing. (With real Kafka: tests/contract/test_eventlog_contract.py,
where a failed transaction leaves nothing readable and the log produces again.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eventlog.kafka_transactions import TransactionalProducers


class Producer:
    """Records what the pool does with it; ``start`` fails while ``refuse`` holds."""

    def __init__(self, transactional_id: str, refuse: list[bool]) -> None:
        self.transactional_id = transactional_id
        self.refuse = refuse
        self.started = self.stopped = False
        self.transactions = 0

    async def start(self) -> None:
        if self.refuse[0]:
            raise ConnectionError("no broker")
        self.started = True

    async def begin_transaction(self) -> None:
        self.transactions += 1

    async def commit_transaction(self) -> None:
        await asyncio.sleep(0)


def _pool(size: int, refuse: list[bool] | None = None) -> tuple[TransactionalProducers, list[Any]]:
    made: list[Producer] = []
    flag = refuse if refuse is not None else [False]

    def make(transactional_id: str) -> Producer:
        made.append(Producer(transactional_id, flag))
        return made[-1]

    async def stop(producer: Any) -> None:
        producer.stopped = True

    return TransactionalProducers(make, stop, prefix="gw", size=size), made


async def test_committed_producers_are_reused_and_at_most_size_exist() -> None:
    pool, made = _pool(2)
    in_flight = 0
    most = 0

    async def one() -> None:
        nonlocal in_flight, most
        async with pool.transaction() as transaction:
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            await transaction.commit()

    await asyncio.gather(*(one() for _ in range(10)))
    assert most == 2
    assert sorted(p.transactional_id for p in made) == ["gw-0", "gw-1"]
    assert sum(p.transactions for p in made) == 10
    await pool.close()
    assert all(p.stopped for p in made)


async def test_a_failed_or_uncommitted_transaction_replaces_its_producer_with_the_same_id() -> None:
    pool, made = _pool(1)
    with pytest.raises(RuntimeError):
        async with pool.transaction():
            raise RuntimeError("a send failed")
    async with pool.transaction():
        pass  # never committed: replaced too
    async with pool.transaction() as transaction:
        await transaction.commit()
    assert [p.transactional_id for p in made] == ["gw-0", "gw-0", "gw-0"]
    assert [p.stopped for p in made] == [True, True, False]
    await pool.close()


async def test_a_slot_that_cannot_start_is_retried_in_the_background() -> None:
    refuse = [True]
    pool, made = _pool(1, refuse)
    with pytest.raises(ConnectionError):
        async with pool.transaction():
            pass
    refuse[0] = False  # the broker is back
    async with asyncio.timeout(5), pool.transaction() as transaction:
        await transaction.commit()
    assert made[-1].started
    assert made[-1].transactional_id == "gw-0"
    await pool.close()
