"""Wiring: build every adapter the settings name, start them, and close them in reverse order.

The gateway's lifespan, ``intake serve`` and ``intake consume`` all open one :class:`Runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from eventlog.embedded import EmbeddedEventLog
from eventlog.kafka import KafkaEventLog
from eventlog.port import EventLog, LogUnavailableError, ProduceRecord
from eventlog.topics import Topics
from identity.keys import KeysetFile, new_keyset, write_keyset
from identity.pseudonyms import Pseudonymiser
from schemas.catalogue import Catalogue, load_catalogue
from statestore import migrate
from statestore.codelists import CodeListRepository
from statestore.engine import StoreEngines, create_engines
from statestore.feed import ReceiptFeed
from statestore.persons import PersonRepository
from statestore.projection import StateRepository
from statestore.receipts import ReceiptRepository
from statestore.vault import VaultRepository
from validators.codelists import CodeListRegistry, load_samples
from validators.engine import ModelValidator, ValidationContext
from wiring.logs import keep_parameters_out_of_logs
from wiring.metrics import Metrics
from wiring.settings import Settings

log = logging.getLogger(__name__)


class ChangeSignal:
    """Wakes long-polling feed readers in this process when a receipt changed; readers poll
    anyway, for changes made by other processes."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


class CodeLists:
    """The code lists validation uses: the shipped samples, overridden by imported lists.
    ``refresh`` picks up lists imported since (by ``intake codelists import``)."""

    def __init__(self, repository: CodeListRepository) -> None:
        self._repository = repository
        self._samples = CodeListRegistry(load_samples())
        self.registry = self._samples
        self._stamps: frozenset[tuple[str, datetime]] | None = None  # of the lists loaded

    async def refresh(self) -> None:
        # Reload only after an import: a national list holds ~100,000 codes, and rebuilding the
        # registry every minute regardless stalled whatever requests were in flight.
        stamps = await self._repository.stamps()
        if stamps == self._stamps:
            return
        self.registry = self._samples.with_lists(await self._repository.load_all())
        self._stamps = stamps


@dataclass
class ProduceOutcomes:
    """When this process's produces last succeeded and failed (monotonic seconds), for the
    readiness rule (wiring/readiness.py)."""

    last_success: float | None = None
    last_failure: float | None = None


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    catalogue: Catalogue
    topics: Topics
    event_log: EventLog
    engines: StoreEngines
    receipts: ReceiptRepository
    state: StateRepository
    metrics: Metrics
    codelists: CodeLists
    validators: dict[str, ModelValidator]
    feed: ReceiptFeed
    receipt_changed: ChangeSignal
    identities: Pseudonymiser
    vault: VaultRepository
    persons: PersonRepository
    produce_outcomes: ProduceOutcomes = field(default_factory=ProduceOutcomes)

    async def produce(self, records: list[ProduceRecord]) -> None:
        """Store ``records`` in the event log, timing it; a failure is counted and raised as
        :class:`LogUnavailableError` for the caller to answer (HTTP: 503 ``log_unavailable``)."""
        started = time.perf_counter()
        try:
            await self.event_log.produce(records)
        except LogUnavailableError:
            self.metrics.produce_errors.inc()
            self.produce_outcomes.last_failure = time.monotonic()
            raise
        self.metrics.produce_duration.observe(time.perf_counter() - started)
        self.produce_outcomes.last_success = time.monotonic()

    def validation_context(self) -> ValidationContext:
        return ValidationContext(
            now=datetime.now(UTC),
            allow_synthetic=self.settings.allows_synthetic_identities,
            codelists=self.codelists.registry,
            reporting_window_days=self.settings.reporting_window_days,
            enforcement=self.settings.rule_enforcement,
        )

    def accepted_topics(self) -> list[str]:
        return [self.topics.accepted(m.message_type, m.version) for m in self.catalogue]


# A 500-item message allocates ~20,000 containers that live until it is answered; with the default
# first threshold (700) the collector walked them some thirty times per message. Almost nothing
# here forms cycles (reference counting frees it), so collecting every 50,000 allocations costs a
# few MB at most and gave ~10 % more items/s (bench/RESULTS.md).
GC_THRESHOLDS = (50_000, 20, 20)


def settle_heap() -> None:
    """Call once a service has loaded what it keeps (catalogue, code lists, schemas: ~150,000
    objects). Frozen, the collector no longer walks them: a full collection took ~100 ms before,
    a stall for whatever was in flight. Then collect less often: see ``GC_THRESHOLDS``."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def open_identity_keys(settings: Settings) -> KeysetFile:
    """The identity keyset; the embedded one is created on first start. A keyset that is
    missing or unusable stops the process (:class:`KeysetError`): nothing is ever written with
    identifiers in the clear instead."""
    path = settings.resolved_identity_keyset
    if settings.identity_keyset_file is None:
        write_keyset(path, new_keyset(), exclusive=True)
    return KeysetFile(path)


def build_event_log(settings: Settings) -> EventLog:
    if settings.event_log == "kafka":
        assert settings.kafka_bootstrap is not None  # checked by Settings
        return KafkaEventLog(
            settings.kafka_bootstrap,
            default_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            compression_type=None
            if settings.kafka_compression == "none"
            else settings.kafka_compression,
            timeout=settings.produce_timeout_seconds,
            transactions=settings.kafka_transactions,
            transactional_id_prefix=settings.kafka_transactional_id,
            transactional_producers=settings.kafka_transactional_producers,
        )
    return EmbeddedEventLog(
        settings.embedded_log_path, default_partitions=settings.topic_partitions
    )


async def _start_log(
    event_log: EventLog, topics: list[str], wait_until: asyncio.Event | None
) -> None:
    """Start the event log and make sure its topics exist. With ``wait_until`` (consumers), a
    log that cannot be reached yet (a broker down, a cluster starting) is tried again with a
    backoff of 0.5 s doubling to 10 s until it answers or ``wait_until`` is set; without, the
    failure is raised (the gateway, whose orchestrator restarts it)."""
    backoff = 0.5
    while True:
        try:
            await event_log.start()
            await event_log.ensure_topics(topics)
            return
        except LogUnavailableError as exc:
            if wait_until is None or wait_until.is_set():
                raise
            log.warning("event log not reachable yet: %s; retrying in %.1fs", exc, backoff)
            await event_log.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_until.wait(), backoff)
            backoff = min(backoff * 2, 10.0)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    *,
    wait_for_log_until: asyncio.Event | None = None,
) -> AsyncIterator[Runtime]:
    """Everything a process needs, from ``settings``. ``wait_for_log_until``: keep trying to
    reach the event log until it answers or the event is set (see :func:`_start_log`)."""
    keep_parameters_out_of_logs()
    catalogue = load_catalogue()
    topics = Topics(settings.topic_prefix)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database_url = settings.resolved_database_url
    if settings.auto_migrate:
        await migrate.upgrade(database_url)
    identity_keys = open_identity_keys(settings)
    engines = create_engines(database_url)
    event_log = build_event_log(settings)
    vault = VaultRepository(engines)
    try:
        runtime = Runtime(
            settings=settings,
            catalogue=catalogue,
            topics=topics,
            event_log=event_log,
            engines=engines,
            receipts=ReceiptRepository(engines),
            state=StateRepository(engines),
            metrics=Metrics(registry if registry is not None else CollectorRegistry()),
            codelists=CodeLists(CodeListRepository(engines)),
            validators={m.key: ModelValidator(m) for m in catalogue},
            feed=ReceiptFeed(engines),
            receipt_changed=ChangeSignal(),
            identities=Pseudonymiser(
                identity_keys,
                list(catalogue),
                enabled=settings.identity_protection,
                vaulted=vault.knows,
            ),
            vault=vault,
            persons=PersonRepository(engines),
        )
        await runtime.codelists.refresh()
        runtime.metrics.record_codelists(runtime.codelists.registry)
        await _start_log(
            event_log,
            [*runtime.accepted_topics(), topics.quarantine, topics.receipts],
            wait_for_log_until,
        )
        yield runtime
    finally:
        await event_log.close()
        await engines.dispose()
