"""Wiring: build every adapter the settings name, start them, and close them in reverse order.

The gateway's lifespan, ``intake serve`` and ``intake consume`` all open one :class:`Runtime`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from eventlog.embedded import EmbeddedEventLog
from eventlog.kafka import KafkaEventLog
from eventlog.port import EventLog
from eventlog.topics import Topics
from intake.metrics import Metrics
from intake.settings import Settings
from schemas.catalogue import Catalogue, load_catalogue
from statestore import migrate
from statestore.engine import StoreEngines, create_engines
from statestore.projection import StateRepository
from statestore.receipts import ReceiptRepository


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

    def accepted_topics(self) -> list[str]:
        return [self.topics.accepted(m.message_type, m.version) for m in self.catalogue]


def build_event_log(settings: Settings) -> EventLog:
    if settings.event_log == "kafka":
        assert settings.kafka_bootstrap is not None  # checked by Settings
        return KafkaEventLog(
            settings.kafka_bootstrap,
            default_partitions=settings.topic_partitions,
            compression_type=None
            if settings.kafka_compression == "none"
            else settings.kafka_compression,
            timeout=settings.produce_timeout_seconds,
        )
    return EmbeddedEventLog(
        settings.embedded_log_path, default_partitions=settings.topic_partitions
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings, registry: CollectorRegistry | None = None
) -> AsyncIterator[Runtime]:
    catalogue = load_catalogue()
    topics = Topics(settings.topic_prefix)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database_url = settings.resolved_database_url
    if settings.auto_migrate:
        await migrate.upgrade(database_url)
    engines = create_engines(database_url)
    event_log = build_event_log(settings)
    try:
        await event_log.start()
        runtime = Runtime(
            settings=settings,
            catalogue=catalogue,
            topics=topics,
            event_log=event_log,
            engines=engines,
            receipts=ReceiptRepository(engines),
            state=StateRepository(engines),
            metrics=Metrics(registry if registry is not None else CollectorRegistry()),
        )
        await event_log.ensure_topics(
            [*runtime.accepted_topics(), topics.quarantine, topics.receipts]
        )
        yield runtime
    finally:
        await event_log.close()
        await engines.dispose()
