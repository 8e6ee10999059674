"""Gateway: ``intake gateway`` processes (Kafka event log, PostgreSQL store) under load from an
aiohttp client, against references measured in the same run on the same broker. (aiohttp, not
httpx, for the load: at 25 requests/s it took 1.3–1.8 ms less per request, time that belongs to
the client, not to the gateway being measured.)

    python -m bench.bench_gateway [--record] [--kafka HOST:PORT] [--database-url URL]
                                  [--seconds S] [--profile DIR]

What it measures (DESIGN §12):

* throughput: 500-item messages of every model (built from the shipped valid examples, with
  one item in 25 made invalid), as fast as the gateway takes them (a fixed number of requests
  in flight), with one and with two gateway processes; then at a fixed rate of half the best
  rate. Items/s, requests/s, latency p50/p95/p99, errors;
* the reference for it: a bare aiokafka producer (``acks=all``, idempotence, one ``send()`` per
  record, with the batch settings that suit it best here, ``REFERENCE_PRODUCER_SETTINGS``)
  sending the same encoded records the gateway sends for those messages, the same number of
  messages in flight: target ours ≥ 0.5× its items/s;
* Kafka's ``ProducerPerformance`` (kafka-tools) with records of the same mean size, ``acks=all``,
  idempotence: what the broker takes on this machine;
* latency: one-item messages at a fixed moderate rate against a bare producer's ``acks=all``
  round trip of one record at the same rate, the two sides' requests interleaved: target ours
  p99 ≤ 3× its p99;
* the cost of atomic messages: a second gateway with ``INTAKE_KAFKA_TRANSACTIONS=false`` (a
  message's records then not one Kafka transaction) in the same rounds, for items/s and the
  one-item p99 (a third side in the interleaving);
* the cost of protecting person identifiers (pseudonyms, the vault, sealed rejected items): a
  gateway with ``INTAKE_IDENTITY_PROTECTION=false`` in the same throughput rounds (DESIGN §12:
  at most 10 % of items/s);
* memory: a 15 MB message sent to a fresh gateway; its peak RSS (``VmHWM``) against the bound
  documented in docs/scaling.md.

Kafka and PostgreSQL come from ``--kafka``/``--database-url`` or, as ``deploy/with-services.sh``
exports them, ``INTAKE_TEST_KAFKA_BOOTSTRAP``/``INTAKE_TEST_POSTGRES_URL``. Each run uses a new
database and new topics; the database is dropped at the end. The gateway, the load generator,
Kafka and PostgreSQL share this machine's cores, so absolute figures are lower than on separate
machines; the ratios compare like with like. Each phase starts with the page cache written out
(``settle_disk``): the kernel's writeback of one phase's Kafka log would otherwise stall
PostgreSQL's commits in the next, a cost of sharing one disk. ``--profile DIR`` records a py-spy
flame graph of one gateway process during the throughput run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.bench_projector import connect_args, databases
from bench.machine import header, meminfo_kib
from eventlog.kafka import DEFAULT_MAX_REQUEST_SIZE, PRODUCER_SETTINGS
from eventlog.topics import Topics
from schemas.catalogue import MessageModel, load_catalogue
from schemas.events import event_for_item, receipt_id_for
from schemas.items import field_value
from validators.codelists import CodeListRegistry, load_samples
from validators.engine import ModelValidator, ValidationContext
from validators.findings import has_errors
from validators.structure import ExtractedItem

UNIT = "974152533"
ITEMS_PER_MESSAGE = 500
INVALID_EVERY = 25  # one item in 25 gets an empty object id (rejected, STR-004)
IN_FLIGHT = 8  # requests in flight per gateway process in the as-fast-as-possible runs
SECONDS = 15.0  # each load phase
ROUNDS = 3  # a phase alternates ours and the reference this many times
ONE_ITEM_RATE = 25.0  # one-item messages per second
# The one-item phase (both sides at once, interleaved) runs this many times longer than the
# others: a p99 needs samples (at 25/s for 120 s, a side's p99 is its 30th slowest of 3,000).
ONE_ITEM_PHASE_FACTOR = 8
# The bare producer's batching: 16 KiB batches suit one send() per record best here (with 1 MiB
# it measured 7 % slower: 36–40k against 41–43k records/s, alternating in one run).
REFERENCE_PRODUCER_SETTINGS: dict[str, int] = {"linger_ms": 0, "max_batch_size": 16384}
# py-spy output: "flamegraph" (an SVG to look at) or "raw" (collapsed stacks to add up by hand)
PROFILE_FORMAT = os.environ.get("BENCH_PROFILE_FORMAT", "flamegraph")
BIG_MESSAGE_BYTES = 15_000_000  # under the 15 MiB body limit
# The documented bound for one gateway process handling a 15 MB message (docs/scaling.md).
MEMORY_BOUND_MIB = 1024
GATEWAY_GOAL = 0.5
LATENCY_GOAL = 3.0
PARTITIONS = 3
ROOT = Path(__file__).resolve().parents[1]
INTAKE = Path(sys.executable).with_name("intake")
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
KAFKA_VERSION = "3.9.1"  # deploy/kafka/kafka.sh
KAFKA_LIBS = (
    Path(os.environ.get("INTAKE_CACHE_DIR", Path.home() / ".cache" / "register-intake"))
    / f"kafka-{KAFKA_VERSION}"
    / "libs"
)
# Stands for the message number in every object id of a template; replaced per request.
PLACEHOLDER = b"~~~~~~~~~~"


# --- messages ----------------------------------------------------------------------------------


def _context() -> ValidationContext:
    return ValidationContext(
        now=datetime.now(UTC), allow_synthetic=True, codelists=CodeListRegistry(load_samples())
    )


def _set_field(item: dict[str, Any], dotted: str, value: str) -> None:
    *parents, last = dotted.split(".")
    node = item
    for part in parents:
        node = node[part]
    node[last] = value


@dataclass(frozen=True)
class Template:
    """A message of ``items`` items whose object ids carry ``PLACEHOLDER``: ``body(n)`` is the
    n-th distinct message (new object ids, new body, so never an idempotent replay)."""

    model: MessageModel
    raw: bytes
    items: int
    rejected: int

    def body(self, n: int) -> bytes:
        return self.raw.replace(PLACEHOLDER, b"%010d" % n)

    @property
    def url_path(self) -> str:
        return f"/v1/messages/{self.model.message_type}/{self.model.version}"


def build_template(
    model: MessageModel, items: int, *, invalid_every: int = INVALID_EVERY
) -> Template:
    """One unit block holding ``items`` items, copied round-robin from the items of every valid
    example of ``model``; every ``invalid_every``-th item has an empty object id."""
    blocks = [b for e in model.examples if e.valid for b in e.message]
    specs = {s.array_field: s for s in model.item_specs}
    pool = [(name, item) for b in blocks for name in specs for item in b.get(name) or []]
    block = {k: v for k, v in blocks[0].items() if k not in specs}
    block[model.unit_field] = UNIT
    for name in specs:
        block[name] = []
    for i, (name, item) in zip(range(items), itertools.cycle(pool), strict=False):
        copied = copy.deepcopy(item)
        spec = specs[name]
        if invalid_every and i % invalid_every == invalid_every - 1:
            _set_field(copied, spec.object_id_field, "")
        else:
            original = str(field_value(item, spec.object_id_field))
            _set_field(copied, spec.object_id_field, f"{original}-{i}-{PLACEHOLDER.decode()}")
        block[name].append(copied)
    raw = orjson.dumps([{k: v for k, v in block.items() if v != []}])
    result = ModelValidator(model).validate(
        orjson.loads(raw.replace(PLACEHOLDER, b"0")), _context()
    )
    assert not has_errors(result.message_findings), (model.key, result.message_findings)
    rejected = sum(1 for i in result.items if i.value is None)
    assert len(result.items) == items, (model.key, len(result.items))
    return Template(model, raw, items, rejected)


def big_template(model: MessageModel, target_bytes: int) -> Template:
    probe = build_template(model, 100)
    items = int(target_bytes / (len(probe.raw) / 100))
    template = build_template(model, items)
    while len(template.body(0)) > target_bytes:
        items = int(items * 0.99)
        template = build_template(model, items)
    return template


# --- the records the gateway sends, for the reference ------------------------------------------


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def gateway_records(template: Template, n: int, topics: Topics) -> list[Record]:
    """The records the gateway sends for ``template.body(n)``: an Avro event for every accepted
    item, a quarantine record for every rejected one, with the gateway's headers."""
    model = template.model
    catalogue = load_catalogue()
    body = template.body(n)
    message = orjson.loads(body)
    result = ModelValidator(model).validate(message, _context())
    body_sha256 = hashlib.sha256(body).hexdigest()
    receipt_id = receipt_id_for(UNIT, f"{model.key}\x1fsha256:{body_sha256}")
    now = datetime.now(UTC)
    common = (
        ("receipt_id", receipt_id.encode()),
        ("message_type", model.message_type.encode()),
        ("version", str(model.version).encode()),
        ("unit", UNIT.encode()),
        ("trace_id", uuid.uuid4().hex.encode()),
    )
    records = []
    for item in result.items:
        if item.value is not None:
            event = event_for_item(
                model,
                item,
                unit=UNIT,
                receipt_id=receipt_id,
                body_sha256=body_sha256,
                recorded_time=now,
            )
            records.append(
                Record(
                    topics.accepted(model.message_type, model.version),
                    event.key,
                    model.event_codec.encode(event.to_avro()),
                    (("event_id", event.event_id.encode()), *common),
                )
            )
        else:
            records.append(
                Record(
                    topics.quarantine,
                    f"{UNIT}\x1f{item.object_id or ''}".encode(),
                    catalogue.quarantine_codec.encode(_quarantined(model, receipt_id, item, now)),
                    common,
                )
            )
    return records


def _quarantined(
    model: MessageModel, receipt_id: str, item: ExtractedItem, now: datetime
) -> dict[str, Any]:
    return {
        "receipt_id": receipt_id,
        "item_index": item.index,
        "path": item.path,
        "unit": UNIT,
        "message_type": model.message_type,
        "version": model.version,
        "object_id": item.object_id,
        "recorded_time": now,
        "item_json": orjson.dumps(item.raw).decode(),
        "block_json": orjson.dumps({model.unit_field: UNIT}).decode(),
        # As long as the gateway's sealed copy of the item and block (nonce, tag, framing).
        "sealed": os.urandom(len(orjson.dumps(item.raw)) + 80),
        "findings": [f.as_dict() for f in item.findings],
    }


# --- gateway processes -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Services:
    kafka: str
    database_url: str
    topic_prefix: str
    data_dir: Path
    logs: Path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "INTAKE_ENVIRONMENT": "development",
            "INTAKE_DATA_DIR": str(self.data_dir),
            "INTAKE_EVENT_LOG": "kafka",
            "INTAKE_KAFKA_BOOTSTRAP": self.kafka,
            "INTAKE_DATABASE_URL": self.database_url,
            "INTAKE_TOPIC_PREFIX": self.topic_prefix,
            "INTAKE_TOPIC_PARTITIONS": str(PARTITIONS),
            "INTAKE_AUTO_MIGRATE": "false",  # migrated once by the benchmark
            "INTAKE_RATE_LIMIT_PER_MINUTE": str(10**9),
        }

    def token(self) -> str:
        out = subprocess.run(  # noqa: S603 (our own command, fixed arguments)
            [str(INTAKE), "dev-token", "--orgnr", UNIT],
            env=self.env(),
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.asynccontextmanager
async def gateways(services: Services, count: int, **settings: str) -> AsyncIterator[list[Gateway]]:
    """``count`` gateway processes, ready to serve; stopped (SIGTERM) at the end. ``settings``
    are extra environment variables for them."""
    started: list[Gateway] = []
    try:
        for _ in range(count):
            port = _free_port()
            log = (services.logs / f"gateway-{port}.log").open("wb")
            process = subprocess.Popen(  # noqa: S603, ASYNC220 (our own command; returns at once)
                [str(INTAKE), "gateway", "--host", "127.0.0.1", "--port", str(port)],
                env={**services.env(), **settings},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            started.append(Gateway(process, f"http://127.0.0.1:{port}"))
        async with httpx.AsyncClient(timeout=5) as client:
            for gateway in started:
                await _wait_ready(client, gateway)
        yield started
    finally:
        for gateway in started:
            gateway.process.send_signal(signal.SIGTERM)
        for gateway in started:
            try:
                gateway.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                gateway.process.kill()
                gateway.process.wait()


async def _wait_ready(client: httpx.AsyncClient, gateway: Gateway) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise RuntimeError(f"gateway exited ({gateway.process.returncode}); see its log")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get(f"{gateway.url}/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"gateway at {gateway.url} not ready within 60 s")


def _memory_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} for {pid}")


@dataclass(frozen=True)
class Writeback:
    dirty_kib: int  # dirty page cache before the sync
    seconds: float  # how long writing it out took


def settle_disk() -> Writeback:
    """Write the page cache's dirty pages out now (``sync``), before a phase starts.

    Kafka and PostgreSQL share this machine's one disk. Kafka does not fsync: a phase leaves
    gigabytes of its log dirty in the page cache, and the kernel writes them out 30 s later, in
    the next phase, where PostgreSQL's commits (each one an fsync) wait behind them. With 1.2 GB
    dirty, a one-item message's reserve took 16.8 ms at p99 instead of 1.6 ms, while the bare
    producer, which writes nothing to PostgreSQL, was not slowed at all. On separate machines
    (docs/scaling.md) neither waits for the other, so each phase starts with nothing dirty."""
    dirty_kib = meminfo_kib("Dirty")
    started = time.perf_counter()
    os.sync()
    return Writeback(dirty_kib, time.perf_counter() - started)


def _reset_peak_rss(pid: int) -> None:
    """Make VmHWM start again from the current RSS (Linux ``clear_refs`` 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# --- load --------------------------------------------------------------------------------------


@dataclass
class Load:
    """What one load phase saw."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    items: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "202")

    def add(self, status: str, latency: float, items: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(latency)
        if status == "202":
            self.items += items

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{self.items_per_second:,.0f} items/s, {self.requests_per_second:,.1f} requests/s, "
            f"p50 {self.percentile(0.5) * 1000:.0f} ms, p95 {self.percentile(0.95) * 1000:.0f} ms, "
            f"p99 {self.percentile(0.99) * 1000:.0f} ms, errors {self.errors} ({statuses})"
        )


class Sender:
    """Sends the n-th message of a rotation of templates to the gateways, round-robin."""

    def __init__(self, urls: Sequence[str], token: str, templates: Sequence[Template]) -> None:
        self._urls = urls
        self._templates = templates
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._count = itertools.count()
        self._run = uuid.uuid4().int % 10**6

    async def send(self, client: aiohttp.ClientSession, load: Load, started: float) -> None:
        n = next(self._count)
        template = self._templates[n % len(self._templates)]
        url = self._urls[n % len(self._urls)] + template.url_path
        number = self._run * 10**4 + n
        headers = {**self._headers, "Idempotency-Key": f"bench-{number}"}
        try:
            async with client.post(url, data=template.body(number), headers=headers) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
        load.add(status, time.perf_counter() - started, template.items)


def _client(in_flight: int, timeout: float = 120) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=in_flight),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def as_fast_as_possible(sender: Sender, in_flight: int, seconds: float) -> Load:
    """``in_flight`` requests always outstanding for ``seconds``."""
    load = Load()
    async with _client(in_flight) as client:

        async def worker(deadline: float) -> None:
            while time.perf_counter() < deadline:
                await sender.send(client, load, time.perf_counter())

        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(in_flight)))
        load.seconds = time.perf_counter() - started
    return load


async def at_fixed_rate(sender: Sender, rate: float, seconds: float) -> Load:
    """One request every 1/``rate`` seconds whether or not earlier ones have been answered;
    latency counts from when a request was due (so a stall is not hidden)."""
    load = Load()
    async with _client(256) as client:
        load.seconds = await _paced(rate, seconds, lambda due: sender.send(client, load, due))
    return load


async def _paced(
    rate: float, seconds: float, *starts: Callable[[float], Coroutine[Any, Any, None]]
) -> float:
    """Start each of ``starts`` every 1/``rate`` seconds for ``seconds``, whether or not earlier
    calls have returned, passing when it was due (the k-th of n is due k/n of an interval after
    the first); wait for them all and return the seconds it took."""
    tasks = []
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        for k, start in enumerate(starts):
            due = started + (i + k / len(starts)) / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(start(due)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - started


# --- references --------------------------------------------------------------------------------


def _producer(bootstrap: str) -> Any:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=DEFAULT_MAX_REQUEST_SIZE,
        **REFERENCE_PRODUCER_SETTINGS,
    )


async def _create_topics(bootstrap: str, topics: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name=t,
                    num_partitions=PARTITIONS,
                    replication_factor=1,
                    topic_configs={"max.message.bytes": str(DEFAULT_MAX_REQUEST_SIZE)},
                )
                for t in topics
            ]
        )
        while True:  # until every partition has a leader
            described = await admin.describe_topics(list(topics))
            if all(
                t["error_code"] == 0
                and t["partitions"]
                and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                # The controller knows the leaders a moment before the broker serves them.
                await asyncio.sleep(2.0)
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def bare_producer(bootstrap: str) -> AsyncIterator[Any]:
    producer = _producer(bootstrap)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def reference_throughput(
    producer: Any, messages: Sequence[list[Record]], in_flight: int, seconds: float
) -> Load:
    """The bare producer sending whole messages' records (send all, await all
    acknowledgements), ``in_flight`` messages at a time, for ``seconds``."""
    load = Load()
    count = itertools.count()

    async def worker(deadline: float) -> None:
        while time.perf_counter() < deadline:
            records = messages[next(count) % len(messages)]
            sent = time.perf_counter()
            futures = [
                await producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
                for r in records
            ]
            await asyncio.gather(*futures)
            load.add("202", time.perf_counter() - sent, len(records))

    started = time.perf_counter()
    await asyncio.gather(*(worker(started + seconds) for _ in range(in_flight)))
    load.seconds = time.perf_counter() - started
    return load


async def reference_round_trip(producer: Any, record: Record, rate: float, seconds: float) -> Load:
    """One record at a time at ``rate`` per second, each awaited until acknowledged (acks=all);
    latency counts from when a record was due."""
    load = Load()

    async def one(due: float) -> None:
        await producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=list(record.headers)
        )
        load.add("202", time.perf_counter() - due, 1)

    load.seconds = await _paced(rate, seconds, one)
    return load


async def one_item_side_by_side(
    sender: Sender, producer: Any, record: Record, rate: float, seconds: float, plain: Sender
) -> tuple[Load, Load, Load]:
    """One-item messages to the gateway, single records from the bare producer and one-item
    messages to the gateway without transactions (``plain``), each side at ``rate`` per second,
    interleaved: each side's request is due a third of an interval after the one before.

    Both sides then sample the same moments of the machine: with a side per slice (as before),
    a slice of the kernel's writeback or of the broker's garbage collection fell on one side
    only, and the two p99s came from different conditions (the ratio ranged 1.8–4.3×). Latency
    counts from when a request was due."""
    ours, reference, without = Load(), Load(), Load()

    async def bare(due: float) -> None:
        await producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=list(record.headers)
        )
        reference.add("202", time.perf_counter() - due, 1)

    async with _client(256) as client:
        ours.seconds = reference.seconds = without.seconds = await _paced(
            rate,
            seconds,
            lambda due: sender.send(client, ours, due),
            bare,
            lambda due: plain.send(client, without, due),
        )
    return ours, reference, without


_PERF_LINE = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


@dataclass(frozen=True)
class ProducerPerformance:
    records: int
    record_size: int
    records_per_second: float
    mb_per_second: float
    p99_ms: float
    seconds: float


def producer_performance(
    bootstrap: str, topic: str, record_size: int, records: int
) -> ProducerPerformance:
    """Kafka's own load generator (``org.apache.kafka.tools.ProducerPerformance``, kafka-tools)."""
    subprocess.run([str(KAFKA_SH), "fetch"], check=True)  # noqa: S603 (our own script)
    command = [
        "java",
        "-cp",
        f"{KAFKA_LIBS}/*",
        f"-Dlog4j.configuration=file:{ROOT / 'deploy' / 'kafka' / 'log4j.properties'}",
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(record_size),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={bootstrap}",
        "acks=all",
        "enable.idempotence=true",
    ]
    started = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True)  # noqa: S603
    seconds = time.perf_counter() - started
    found = [m for m in _PERF_LINE.finditer(out.stdout)]
    if not found:
        raise RuntimeError(f"ProducerPerformance said:\n{out.stdout}\n{out.stderr}")
    last = found[-1]
    return ProducerPerformance(
        int(last["records"]),
        record_size,
        float(last["rate"]),
        float(last["mb"]),
        float(last["p99"]),
        seconds,
    )


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Results:
    templates: list[Template]
    seconds: float
    record_size: int
    one: Load = field(default_factory=Load)
    two: Load = field(default_factory=Load)
    fixed: Load = field(default_factory=Load)
    fixed_rate: float = 0.0
    reference: Load = field(default_factory=Load)
    perf: ProducerPerformance | None = None
    one_item: Load = field(default_factory=Load)
    one_item_reference: Load = field(default_factory=Load)
    # The same gateway without transactions (the cost of atomic messages).
    plain: Load = field(default_factory=Load)
    one_item_plain: Load = field(default_factory=Load)
    # The same gateway storing identifiers as sent (the cost of pseudonymisation).
    unprotected: Load = field(default_factory=Load)
    big_items: int = 0
    big_bytes: int = 0
    big_status: str = ""
    big_seconds: float = 0.0
    rss_before_kib: int = 0
    rss_peak_kib: int = 0
    writeback: dict[str, Writeback] = field(default_factory=dict)  # per phase, see settle_disk
    postgres_version: str = ""
    elapsed: float = 0.0


def _best(loads: Sequence[Load]) -> Load:
    """The round with the most items/s: what the side can do when the machine's other work
    (other processes share these cores) disturbs it least."""
    return max(loads, key=lambda load: load.items_per_second)


async def run(kafka: str, server_url: str, seconds: float, profile: Path | None) -> Results:
    catalogue = load_catalogue()
    templates = [build_template(m, ITEMS_PER_MESSAGE) for m in catalogue]
    one_item = build_template(catalogue.require("HST_Avtale", 1), 1, invalid_every=0)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topics = Topics(prefix)
    reference_topics = Topics(f"{prefix}-reference")
    # The reference sends what the gateway sends: the records of a few of the same messages.
    reference_messages = [
        gateway_records(t, n, reference_topics) for n in range(4) for t in templates
    ]
    record_size = _mean_event_size(reference_messages)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-gateway-", dir="/tmp"))
    try:
        async with databases(server_url) as dbs:
            services = Services(kafka, await dbs.fresh(), prefix, run_dir / "data", run_dir)
            services.data_dir.mkdir()
            token = services.token()
            await _create_topics(
                kafka,
                sorted(
                    {r.topic for m in reference_messages for r in m}
                    | {reference_topics.accepted("HST_Avtale", 1), f"{prefix}-perf"}
                ),
            )
            results = Results(templates, seconds, record_size)
            results.postgres_version = await _postgres_version(services.database_url)
            await _measure(
                services,
                token,
                templates,
                one_item,
                reference_messages,
                results,
                topics,
                reference_topics,
                profile,
            )
            return results
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


async def _postgres_version(url: str) -> str:
    conn = await asyncpg.connect(**connect_args(url))
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def _mean_event_size(messages: Sequence[list[Record]]) -> int:
    sizes = [len(r.value) for m in messages for r in m]
    return round(sum(sizes) / len(sizes))


async def _measure(
    services: Services,
    token: str,
    templates: list[Template],
    one_item: Template,
    reference_messages: list[list[Record]],
    results: Results,
    topics: Topics,
    reference_topics: Topics,
    profile: Path | None,
) -> None:
    """Ours and the references in alternating rounds (``ROUNDS`` of a third of the phase each),
    so that load from outside the benchmark falls on both sides alike."""
    slice_seconds = results.seconds / ROUNDS
    single_record = dataclasses.replace(
        reference_messages[0][0], topic=reference_topics.accepted("HST_Avtale", 1)
    )
    ours, reference, two, plain, unprotected = [], [], [], [], []
    # The broker warmed up first: a freshly started JVM compiles its hot code during its first
    # minute of load, work on the cores the gateway and the reference share, which fell on
    # whichever rounds came first (with fresh services ours gave 0.50× before, 0.53× after).
    producer_performance(services.kafka, f"{topics.prefix}-perf", results.record_size, 200_000)
    async with bare_producer(services.kafka) as producer:
        await reference_throughput(producer, reference_messages, IN_FLIGHT, 1)  # warm-up
        await reference_round_trip(producer, single_record, ONE_ITEM_RATE, 1)
        async with (
            gateways(services, 1) as (gateway,),
            gateways(services, 1, INTAKE_KAFKA_TRANSACTIONS="false") as (without,),
            gateways(services, 1, INTAKE_IDENTITY_PROTECTION="false") as (exposed,),
        ):
            sender = Sender([gateway.url], token, templates)
            single = Sender([gateway.url], token, [one_item])
            plain_sender = Sender([without.url], token, templates)
            plain_single = Sender([without.url], token, [one_item])
            exposed_sender = Sender([exposed.url], token, templates)
            await as_fast_as_possible(exposed_sender, IN_FLIGHT, 3)
            for warm, one in ((sender, single), (plain_sender, plain_single)):
                await as_fast_as_possible(warm, IN_FLIGHT, 3)  # warm-up: topics, pools, caches
                await at_fixed_rate(one, ONE_ITEM_RATE, 1)
            results.writeback["throughput"] = settle_disk()
            flame = _start_profile(gateway.pid, profile, results.seconds)
            for _ in range(ROUNDS):
                ours.append(await as_fast_as_possible(sender, IN_FLIGHT, slice_seconds))
                reference.append(
                    await reference_throughput(
                        producer, reference_messages, IN_FLIGHT, slice_seconds
                    )
                )
                plain.append(await as_fast_as_possible(plain_sender, IN_FLIGHT, slice_seconds))
                unprotected.append(
                    await as_fast_as_possible(exposed_sender, IN_FLIGHT, slice_seconds)
                )
            if flame is not None:
                flame.wait()
            results.writeback["one-item"] = settle_disk()
            (
                results.one_item,
                results.one_item_reference,
                results.one_item_plain,
            ) = await one_item_side_by_side(
                single,
                producer,
                single_record,
                ONE_ITEM_RATE,
                results.seconds * ONE_ITEM_PHASE_FACTOR,
                plain_single,
            )
            results.one, results.reference = _best(ours), _best(reference)
            results.plain = _best(plain)
            results.unprotected = _best(unprotected)
            results.fixed_rate = round(results.one.requests_per_second / 2, 1)
            results.writeback["fixed rate"] = settle_disk()
            results.fixed = await at_fixed_rate(sender, results.fixed_rate, results.seconds)
    async with gateways(services, 2) as pair:
        sender = Sender([g.url for g in pair], token, templates)
        await as_fast_as_possible(sender, 2 * IN_FLIGHT, 3)
        results.writeback["two processes"] = settle_disk()
        for _ in range(ROUNDS):
            two.append(await as_fast_as_possible(sender, 2 * IN_FLIGHT, slice_seconds))
    results.two = _best(two)
    results.perf = producer_performance(
        services.kafka,
        f"{topics.prefix}-perf",
        results.record_size,
        records=max(200_000, int(results.seconds * 20_000)),
    )
    big = big_template(templates[0].model, BIG_MESSAGE_BYTES)
    big_body = big.body(10**9)
    async with gateways(services, 1) as (fresh,):
        sender = Sender([fresh.url], token, templates)
        await as_fast_as_possible(sender, 2, 2)  # warm-up, as a gateway in service would be
        results.rss_before_kib = _memory_kib(fresh.pid, "VmRSS")
        _reset_peak_rss(fresh.pid)
        async with _client(1, timeout=600) as client:
            started = time.perf_counter()
            async with client.post(
                fresh.url + big.url_path,
                data=big_body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            ) as response:
                await response.read()
                big_status = response.status
            results.big_seconds = time.perf_counter() - started
        results.rss_peak_kib = _memory_kib(fresh.pid, "VmHWM")
    results.big_items, results.big_bytes = big.items, len(big_body)
    results.big_status = str(big_status)


def _start_profile(
    pid: int, directory: Path | None, seconds: float
) -> subprocess.Popen[bytes] | None:
    if directory is None:
        return None
    py_spy = Path(sys.executable).with_name("py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(  # noqa: S603 (a dev tool, fixed arguments)
        [
            str(py_spy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--format",
            PROFILE_FORMAT,
            "--output",
            str(directory / ("gateway.txt" if PROFILE_FORMAT == "raw" else "gateway.svg")),
            "--nonblocking",
        ]
    )


# --- the report --------------------------------------------------------------------------------


def report(r: Results) -> list[str]:
    perf = r.perf
    assert perf is not None, "measured"
    ratio = r.one.items_per_second / r.reference.items_per_second
    two_ratio = r.two.items_per_second / r.reference.items_per_second
    perf_ratio = r.one.items_per_second / perf.records_per_second
    p99, reference_p99 = r.one_item.percentile(0.99), r.one_item_reference.percentile(0.99)
    latency_ratio = p99 / reference_p99
    plain_p99 = r.one_item_plain.percentile(0.99)
    atomic_ratio = r.one.items_per_second / r.plain.items_per_second
    plain_ratio = r.plain.items_per_second / r.reference.items_per_second
    plain_latency_ratio = plain_p99 / reference_p99
    protection_cost = 1 - r.one.items_per_second / r.unprotected.items_per_second
    rss_mib, before_mib = r.rss_peak_kib / 1024, r.rss_before_kib / 1024
    models = ", ".join(t.model.key for t in r.templates)
    rejected = sum(t.rejected for t in r.templates) / len(r.templates)

    def missed(ok: bool) -> str:
        return "" if ok else ", missed"

    return [
        "",
        "### Gateway (one `intake gateway` process unless said; Kafka, PostgreSQL and the load "
        "generator on the same machine)",
        "",
        f"- services: Apache Kafka {KAFKA_VERSION} (one broker, KRaft), PostgreSQL "
        f"{r.postgres_version}, both on loopback",
        f"- messages: {ITEMS_PER_MESSAGE} items each ({rejected:.0f} rejected), rotating over "
        f"{models}; every message new (object ids, body, Idempotency-Key)",
        "- producer settings: acks=all and idempotence on both sides; ours "
        f"{', '.join(f'{k}={v}' for k, v in PRODUCER_SETTINGS.items())} (whole batches per "
        "partition), the bare producer "
        f"{', '.join(f'{k}={v}' for k, v in REFERENCE_PRODUCER_SETTINGS.items())} (one send() "
        f"per record; its best here); mean event record {r.record_size} bytes",
        f"- rounds: each throughput phase of {r.seconds:.0f} s alternates ours and the reference "
        f"{ROUNDS} times, and counts the best round of each side; the one-item phase "
        f"({r.seconds * ONE_ITEM_PHASE_FACTOR:.0f} s) interleaves the two sides' requests; "
        "before them the broker is warmed up with 200,000 records from ProducerPerformance",
        "- disk: each phase starts with the page cache written out (sync; Kafka and PostgreSQL "
        "share one disk here, see settle_disk): "
        + ", ".join(
            f"{phase} {w.dirty_kib / 2**20:.1f} GiB dirty, {w.seconds:.1f} s"
            for phase, w in r.writeback.items()
        ),
        f"- ours, as fast as possible ({IN_FLIGHT} requests in flight): {r.one.summary()}",
        f"- ours, two gateway processes ({2 * IN_FLIGHT} in flight, round-robin): "
        f"{r.two.summary()}",
        f"- ours at a fixed {r.fixed_rate} requests/s (half the best): {r.fixed.summary()}",
        f"- reference, bare aiokafka producer, the same records, {IN_FLIGHT} messages in flight: "
        f"{r.reference.items_per_second:,.0f} records/s, "
        f"p99 {r.reference.percentile(0.99) * 1000:.0f} ms per message",
        f"- Kafka ProducerPerformance ({perf.records:,} records of {perf.record_size} bytes, "
        f"acks=all, idempotence, Java client defaults otherwise): "
        f"{perf.records_per_second:,.0f} records/s ({perf.mb_per_second:.1f} MB/s), "
        f"p99 {perf.p99_ms:.0f} ms",
        f"- one-item messages at {ONE_ITEM_RATE:.0f}/s: ours {r.one_item.summary()}; bare "
        f"producer acks=all round trip at the same rate: p50 "
        f"{r.one_item_reference.percentile(0.5) * 1000:.1f} ms, "
        f"p99 {reference_p99 * 1000:.1f} ms",
        "- atomic messages: ours writes each message as one Kafka transaction; the same gateway "
        "with INTAKE_KAFKA_TRANSACTIONS=false ran beside it in the same rounds (throughput) and "
        f"as a third interleaved side (one-item): {r.plain.summary()}; one-item "
        f"{r.one_item_plain.summary()}",
        "- identifiers: ours pseudonymises, writes the vault and seals rejected items; the same "
        "gateway with INTAKE_IDENTITY_PROTECTION=false (as sent) ran in the same rounds: "
        f"{r.unprotected.summary()}",
        f"- 15 MB message ({r.big_bytes / 1e6:.1f} MB, {r.big_items:,} items) to a fresh gateway: "
        f"{r.big_status} in {r.big_seconds:.1f} s; RSS {before_mib:.0f} MiB before, peak "
        f"{rss_mib:.0f} MiB (bound {MEMORY_BOUND_MIB} MiB{missed(rss_mib <= MEMORY_BOUND_MIB)})",
        f"- whole benchmark {r.elapsed:.0f} s",
        "",
        "| | ours | reference | ours/reference |",
        "|---|---|---|---|",
        f"| items/s, 500-item messages, vs bare aiokafka producer | "
        f"{r.one.items_per_second:,.0f} | {r.reference.items_per_second:,.0f} | "
        f"**{ratio:.2f}×** (goal ≥ {GATEWAY_GOAL}×{missed(ratio >= GATEWAY_GOAL)}) |",
        f"| the same, two gateway processes | {r.two.items_per_second:,.0f} | "
        f"{r.reference.items_per_second:,.0f} | {two_ratio:.2f}× |",
        f"| items/s vs Kafka ProducerPerformance (broker limit) | "
        f"{r.one.items_per_second:,.0f} | {perf.records_per_second:,.0f} | {perf_ratio:.2f}× |",
        f"| p99 of one-item messages vs bare acks=all round trip (ms) | {p99 * 1000:.1f} | "
        f"{reference_p99 * 1000:.1f} | **{latency_ratio:.1f}×** "
        f"(goal ≤ {LATENCY_GOAL}×{missed(latency_ratio <= LATENCY_GOAL)}) |",
        f"| atomic messages: items/s with transactions vs without | "
        f"{r.one.items_per_second:,.0f} | {r.plain.items_per_second:,.0f} | "
        f"{atomic_ratio:.2f}× (without: {plain_ratio:.2f}× the bare producer) |",
        f"| atomic messages: one-item p99 with transactions vs without (ms) | {p99 * 1000:.1f} | "
        f"{plain_p99 * 1000:.1f} | {p99 / plain_p99:.2f}× (without: {plain_latency_ratio:.1f}× "
        "the bare round trip) |",
        f"| identifiers protected: items/s with pseudonyms, vault and sealing vs without | "
        f"{r.one.items_per_second:,.0f} | {r.unprotected.items_per_second:,.0f} | "
        f"cost {protection_cost:.0%} (goal ≤ 10 %{missed(protection_cost <= 0.10)}) |",
        f"| peak RSS with a 15 MB message (MiB) | {rss_mib:.0f} | bound {MEMORY_BOUND_MIB} | "
        f"{rss_mib / MEMORY_BOUND_MIB:.2f} of the bound |",
    ]


def record(lines: Sequence[str]) -> None:
    results = Path(__file__).with_name("RESULTS.md")
    with results.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gateway", description=__doc__)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--kafka", default=os.environ.get("INTAKE_TEST_KAFKA_BOOTSTRAP"))
    parser.add_argument("--database-url", default=os.environ.get("INTAKE_TEST_POSTGRES_URL"))
    parser.add_argument("--seconds", type=float, default=SECONDS, help="length of each phase")
    parser.add_argument("--profile", type=Path, help="write a py-spy flame graph here")
    args = parser.parse_args(argv)
    if not args.kafka or not args.database_url:
        parser.error(
            "needs Kafka and PostgreSQL: --kafka and --database-url, or run it under "
            "deploy/with-services.sh"
        )
    started = time.perf_counter()
    results = asyncio.run(run(args.kafka, args.database_url, args.seconds, args.profile))
    results.elapsed = time.perf_counter() - started
    out = ["", "## Gateway benchmark", *header(), *report(results)]
    print("\n".join(out))
    if args.record:
        record(out)


if __name__ == "__main__":
    main()
