"""A three-broker Kafka cluster (KRaft, replication factor 3, ``min.insync.replicas`` 2) under
load, with the production split: two ``intake gateway`` processes, two ``intake consume
projector`` replicas in one group, the quarantine indexer and the receipts dispatcher, all
against PostgreSQL. While clients stream messages (retrying like an EPJ), three faults in turn,
each given time to heal: SIGKILL of the broker leading most partitions, then of the projector
group's coordinator, then of a projector replica.

Checked: every item that got a 202 is applied exactly once; a message answered 503 and never
sent again has nothing applied (atomic messages: all or none, and here none); no consumer process
exits by itself; lag returns to 0 once the load stops. For each fault, the seconds from the kill
to the first 202 of a message first sent after it, and to the moment the consumers have applied
everything the log held at that 202 (under steady load lag itself is seldom exactly 0)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from eventlog.kafka import KafkaEventLog
from eventlog.port import LogUnavailableError
from tests.conftest import fresh_postgres_database, require_service
from tests.reliability.harness import (
    ROOT,
    URL,
    Outcomes,
    Service,
    appointments,
    count_store,
    metric,
    migrate_store,
    send_until_acknowledged,
    token_for,
    wait_until_final,
)
from tests.servers import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
BROKERS = 3
CLIENTS = 4  # clients that retry each message until it is acknowledged
ITEMS_PER_MESSAGE = 4  # the last one invalid: every message writes to two topics
PAUSE_SECONDS = 0.15  # between a client's messages: load the machine's two cores share
STEADY_SECONDS = 6.0  # load before the first fault and after the last
HEAL_TIMEOUT = 90.0  # for each fault: until a fresh 202 and the consumers caught up


@dataclass
class Cluster:
    run_dir: Path
    bootstrap: str

    def node(self, node_id: int) -> Path:
        return self.run_dir / f"node-{node_id}"

    def kill(self, node_id: int) -> None:
        pid = int((self.node(node_id) / "kafka.pid").read_text())
        os.kill(pid, signal.SIGKILL)

    def resume(self, node_id: int) -> None:
        subprocess.run([str(KAFKA_SH), "resume", str(self.node(node_id))], check=True)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    require_service("INTAKE_TEST_KAFKA_BOOTSTRAP", "Apache Kafka")  # the jars are here
    run_dir = tmp_path / "kafka"
    done = subprocess.run(
        [str(KAFKA_SH), "cluster", str(run_dir), str(BROKERS)],
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        yield Cluster(run_dir, done.stdout.strip())
    finally:
        subprocess.run([str(KAFKA_SH), "cluster-stop", str(run_dir)], check=False)


async def _admin_call(bootstrap: str, call: Callable[[Any], Awaitable[Any]]) -> Any:
    """``call(admin)`` on a fresh admin client, retried while brokers come and go."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            return await call(admin)
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


async def _partitions(bootstrap: str, topics: list[str]) -> list[dict[str, Any]]:
    described = await _admin_call(bootstrap, lambda admin: admin.describe_topics(topics))
    return [p for t in described for p in t["partitions"]]


async def _busiest_leader(bootstrap: str, topics: list[str]) -> int:
    leaders = [int(p["leader"]) for p in await _partitions(bootstrap, topics)]
    return max(set(leaders), key=leaders.count)


async def _fully_replicated(bootstrap: str, topics: list[str], timeout: float = 90.0) -> None:
    """Until every partition of ``topics`` and of the internal topics has all replicas in sync."""
    everything = [*topics, "__consumer_offsets", "__transaction_state"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        partitions = await _partitions(bootstrap, everything)
        if partitions and all(len(p["isr"]) == BROKERS for p in partitions):
            return
        assert loop.time() < deadline, "the cluster did not get its replicas back in sync"
        await asyncio.sleep(0.5)


Key = tuple[str, int]  # (consumer, partition of its topic)


@dataclass(frozen=True)
class Sample:
    at: float  # loop time
    ends: dict[Key, int]  # the topics' end offsets
    stored: dict[Key, int]  # the next offsets each consumer stored with its data

    @property
    def lag(self) -> int:
        return sum(max(0, end - self.stored.get(key, 0)) for key, end in self.ends.items())


@dataclass
class Lag:
    """Samples of what the projector and the quarantine indexer still have to read, taken from
    outside: the topics' end offsets against the offsets each consumer stored with its data."""

    bootstrap: str
    database_url: str
    topics: dict[str, str]  # consumer name -> its topic
    samples: list[Sample] = field(default_factory=list)

    async def sample_until(self, stop: asyncio.Event) -> None:
        log = KafkaEventLog(self.bootstrap, transactions=False, timeout=3.0)
        engine = create_async_engine(self.database_url, poolclass=NullPool)
        try:
            while not stop.is_set():
                try:
                    async with asyncio.timeout(5):
                        await log.start()
                        self.samples.append(await self._sample(log, engine))
                except (LogUnavailableError, TimeoutError):
                    await log.close()  # a broker went away under it: connect afresh
                await asyncio.sleep(0.25)
        finally:
            await log.close()
            await engine.dispose()

    async def _sample(self, log: KafkaEventLog, engine: Any) -> Sample:
        ends: dict[Key, int] = {}
        for consumer, topic in self.topics.items():
            for tp, end in (await log.end_offsets(topic)).items():
                ends[consumer, tp.partition] = end
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT consumer, topic, partition, next_offset FROM consumer_offsets")
            )
            stored = {
                (str(r[0]), int(r[2])): int(r[3])
                for r in rows
                if self.topics.get(str(r[0])) == str(r[1])
            }
        return Sample(asyncio.get_running_loop().time(), ends, stored)

    def zero_after(self, moment: float) -> float | None:
        """When lag was first 0 after ``moment``."""
        return next((s.at for s in self.samples if s.at > moment and s.lag == 0), None)

    def caught_up_after(self, moment: float) -> float | None:
        """When the consumers had first stored everything the log held at ``moment`` (its end
        offsets in the first sample after it): under steady load, lag is rarely exactly 0."""
        then = next((s for s in self.samples if s.at >= moment), None)
        if then is None:
            return None
        return next(
            (
                s.at
                for s in self.samples
                if s.at > then.at
                and all(s.stored.get(key, 0) >= end for key, end in then.ends.items())
            ),
            None,
        )

    def last(self) -> str:
        if not self.samples:
            return "no lag sample"
        s = self.samples[-1]
        return "; ".join(
            f"{c}/{p}: stored {s.stored.get((c, p))}, end {end}" for (c, p), end in s.ends.items()
        )


@dataclass
class Load:
    """Messages streamed to both gateways: retrying clients, and one client that sends each
    message once and gives up on a 503 (what must then never be applied, even in part)."""

    bases: list[str]
    token: str
    outcomes: Outcomes = field(default_factory=Outcomes)
    # message number -> (first sent, acknowledged) in loop time
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)
    abandoned: dict[str, list[str]] = field(default_factory=dict)  # key -> its valid object ids
    abandoned_unknown: int = 0  # no answer at all (a lost connection): outcome unknown
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def first_fresh_202(self, moment: float) -> float | None:
        acknowledged = [done for sent, done in self.timings.values() if sent > moment]
        return min(acknowledged, default=None)

    async def retrying(self, client: httpx.AsyncClient, index: int, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            n = next(self.numbers)
            key = f"cl-{n}"
            ids = [f"{key}-{i}" for i in range(ITEMS_PER_MESSAGE)]
            sent = loop.time()
            await send_until_acknowledged(
                client,
                f"{self.bases[(index + n) % len(self.bases)]}{URL}",
                appointments(ids, invalid=ids[-1:]),
                key,
                self.token,
                self.outcomes,
                deadline=sent + 120,
            )
            self.timings[key] = (sent, loop.time())
            await asyncio.sleep(PAUSE_SECONDS)

    async def once_each(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            n = next(self.numbers)
            key = f"ab-{n}"
            ids = [f"{key}-{i}" for i in range(ITEMS_PER_MESSAGE)]
            try:
                response = await client.post(
                    f"{self.bases[n % len(self.bases)]}{URL}",
                    json=appointments(ids, invalid=ids[-1:]),
                    headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": key},
                )
            except httpx.TransportError:
                self.abandoned_unknown += 1
                continue
            self.outcomes.statuses[response.status_code] += 1
            if response.status_code == 202:
                receipt = response.json()
                accepted = [i["object_id"] for i in receipt["items"] if i["status"] != "rejected"]
                self.outcomes.acknowledged[key] = (receipt["receipt_id"], accepted)
            elif response.status_code == 503:
                self.outcomes.codes[str(response.json().get("code"))] += 1
                self.abandoned[key] = ids[:-1]
            else:
                self.outcomes.unexpected.append(f"{response.status_code} {response.text[:300]}")
            await asyncio.sleep(PAUSE_SECONDS)


async def _applied_object_ids(database_url: str, prefix: str) -> set[str]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT DISTINCT object_id FROM events WHERE object_id LIKE :p"),
                {"p": f"{prefix}%"},
            )
            return {str(r[0]) for r in rows}
    finally:
        await engine.dispose()


async def test_broker_coordinator_and_projector_killed_under_load(
    cluster: Cluster,
    services: list[Service],
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    database_url = await fresh_postgres_database(
        require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL")
    )
    prefix = f"cluster{uuid.uuid4().hex[:8]}"
    accepted_topic, quarantine_topic = f"{prefix}.accepted.HST_Avtale.v1", f"{prefix}.quarantine"
    data_dir = tmp_path / "data"
    env = {
        "INTAKE_EVENT_LOG": "kafka",
        "INTAKE_KAFKA_BOOTSTRAP": cluster.bootstrap,
        "INTAKE_TOPIC_PREFIX": prefix,
        "INTAKE_TOPIC_REPLICATION_FACTOR": str(BROKERS),
        "INTAKE_DATABASE_URL": database_url,
        "INTAKE_AUTO_MIGRATE": "false",
        "INTAKE_PRODUCE_TIMEOUT_SECONDS": "3",
        "INTAKE_CONSUMER_POLL_SECONDS": "0.1",
        "INTAKE_RATE_LIMIT_PER_MINUTE": "1000000",
    }
    await migrate_store(data_dir, env, services)

    def service(args: list[str], name: str) -> Service:
        started = Service([*args, "--data-dir", str(data_dir)], env, tmp_path / f"{name}.log")
        services.append(started)
        started.start()
        return started

    gateway_ports = [free_port(), free_port()]
    gateways = [
        service(["gateway", "--port", str(port)], f"gateway-{i}")
        for i, port in enumerate(gateway_ports)
    ]
    consumer_ports = {
        name: free_port() for name in ("projector-0", "projector-1", "quarantine", "receipts")
    }

    def consumer(name: str) -> Service:
        kind = name.split("-")[0]
        return service(
            ["consume", kind, "--metrics-port", str(consumer_ports[name])],
            f"{name}-{uuid.uuid4().hex[:4]}",
        )

    consumers = {name: consumer(name) for name in consumer_ports}
    bases = [f"http://127.0.0.1:{port}" for port in gateway_ports]
    for gateway, base in zip(gateways, bases, strict=True):
        await gateway.wait_ready(f"{base}/readyz", timeout=120)
    for name, process in consumers.items():
        await process.wait_ready(f"http://127.0.0.1:{consumer_ports[name]}/metrics", timeout=120)
    topics = [accepted_topic, quarantine_topic]
    await _fully_replicated(cluster.bootstrap, topics)

    load = Load(bases, token_for(data_dir))
    lag = Lag(
        cluster.bootstrap,
        database_url,
        {"projector": accepted_topic, "quarantine": quarantine_topic},
    )
    loop = asyncio.get_running_loop()
    stop_load, stop_lag = asyncio.Event(), asyncio.Event()
    faults: dict[str, dict[str, float | int | None]] = {}

    async def heal(fault: str, killed_at: float) -> None:
        """Until a message first sent after the kill is acknowledged and the consumers have
        caught up with the log as it was then."""
        deadline = killed_at + HEAL_TIMEOUT
        while loop.time() < deadline:
            first = load.first_fresh_202(killed_at)
            zero = None if first is None else lag.caught_up_after(first)
            if zero is not None:
                faults[fault].update(
                    first_202_s=round(first - killed_at, 1) if first else None,
                    caught_up_s=round(zero - killed_at, 1),
                )
                return
            await asyncio.sleep(0.25)
        first = load.first_fresh_202(killed_at)
        raise AssertionError(
            f"{fault}: within {HEAL_TIMEOUT:.0f} s, first fresh 202 "
            f"{None if first is None else round(first - killed_at, 1)} s; {lag.last()}"
        )

    async with httpx.AsyncClient(timeout=30) as client:
        running = [
            *(asyncio.create_task(load.retrying(client, i, stop_load)) for i in range(CLIENTS)),
            asyncio.create_task(load.once_each(client, stop_load)),
        ]
        sampler = asyncio.create_task(lag.sample_until(stop_lag))
        try:
            await asyncio.sleep(STEADY_SECONDS)
            assert load.outcomes.acknowledged, load.outcomes.statuses

            leader = await _busiest_leader(cluster.bootstrap, topics)
            faults["partition leader"] = {"broker": leader}
            cluster.kill(leader)
            await heal("partition leader", loop.time())
            await asyncio.to_thread(cluster.resume, leader)
            await _fully_replicated(cluster.bootstrap, topics)

            coordinator = await _admin_call(
                cluster.bootstrap, lambda admin: admin.find_coordinator(f"{prefix}.projector")
            )
            faults["group coordinator"] = {"broker": coordinator}
            cluster.kill(coordinator)
            await heal("group coordinator", loop.time())
            await asyncio.to_thread(cluster.resume, coordinator)
            await _fully_replicated(cluster.bootstrap, topics)

            faults["projector replica"] = {}
            await consumers["projector-0"].signal(signal.SIGKILL)
            await heal("projector replica", loop.time())
            consumers["projector-0"] = consumer("projector-0")  # as an orchestrator would
            await asyncio.sleep(STEADY_SECONDS)
        except BaseException:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        finally:
            stop_load.set()
        await asyncio.gather(*running)  # each finishes the message it is sending
        final = await wait_until_final(
            client,
            bases[0],
            [receipt_id for receipt_id, _ in load.outcomes.acknowledged.values()],
            load.token,
            timeout=120,
        )
        ended = loop.time()
        while lag.zero_after(ended) is None:
            assert loop.time() < ended + 60, f"lag did not return to 0: {lag.last()}"
            await asyncio.sleep(0.25)
        stop_lag.set()
        await sampler
        restarts = {
            name: metric(
                (await client.get(f"http://127.0.0.1:{consumer_ports[name]}/metrics")).text,
                "intake_consumer_restarts_total",
            )
            for name in consumers
        }

    exited = {
        name: process.process.poll() if process.process else None
        for name, process in [
            *zip(("gateway-0", "gateway-1"), gateways, strict=True),
            *consumers.items(),
        ]
        if not process.alive
    }
    store = await count_store(database_url, load.outcomes.acknowledged_items)
    applied_abandoned = await _applied_object_ids(database_url, "ab-")
    partial = whole = 0
    for valid in load.abandoned.values():
        found = sum(1 for object_id in valid if object_id in applied_abandoned)
        partial += 0 < found < len(valid)
        whole += found == len(valid)
    figures.update(
        cluster=f"{BROKERS} KRaft nodes (broker + controller), replication factor 3, "
        "min.insync.replicas 2",
        processes="2 gateways, 2 projectors, quarantine indexer, receipts dispatcher",
        load=f"{CLIENTS} retrying clients + 1 that gives up on a 503, {ITEMS_PER_MESSAGE} items "
        "per message (1 invalid)",
        faults=faults,
        messages_acknowledged=len(load.outcomes.acknowledged),
        answers=dict(sorted(load.outcomes.statuses.items())),
        problem_codes=dict(load.outcomes.codes),
        items_acknowledged=len(load.outcomes.acknowledged_items),
        items_found=store.found,
        items_lost=store.lost,
        duplicates=store.duplicates,
        abandoned_after_503=len(load.abandoned),
        abandoned_partly_applied=partial,
        abandoned_applied_whole=whole,
        abandoned_without_answer=load.abandoned_unknown,
        consumer_exits=exited,
        consumer_restarts=restarts,
        receipts_final=dict(final),
    )
    assert not load.outcomes.unexpected, load.outcomes.unexpected[:5]
    assert load.outcomes.server_errors() == 0, load.outcomes.statuses
    assert not exited, {name: p.tail() for name, p in consumers.items() if not p.alive}
    assert store.lost == 0
    assert store.duplicates == 0
    assert partial == 0, "a message answered 503 was applied in part"
    assert whole == 0, "a message answered 503 was applied after all"
    assert store.unexpected == 0  # nothing applied that was not acknowledged
    assert set(final) == {"partially_applied"}, final
