"""The metrics catalogue: every metric's name, type, labels and help text, in one place.

``CATALOGUE`` lists them (``docs/metrics.md`` explains each, and a test holds the two together);
:class:`Metrics` creates them on the ``CollectorRegistry`` it is given (a fresh one in tests).

Labels have bounded values only — route templates, message types and versions, outcomes, rule
ids, consumer and topic names, code-list ids — never a unit, a person, a receipt or an object.
Label values from a closed set are created at zero up front, so ``rate()`` and ``increase()``
see the first event and alerts do not miss it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from wiring import __version__

MetricType = Literal["counter", "gauge", "histogram"]

# Closed label sets whose values exist from start-up.
WebhookOutcome = Literal["delivered", "failed", "parked"]
ConsumerName = Literal["projector", "webhooks", "quarantine"]
Component = Literal["gateway", "projector", "webhooks", "quarantine"]

HTTP_REQUESTS = "intake_http_requests_total"
HTTP_DURATION = "intake_http_request_duration_seconds"
ITEMS = "intake_items_total"
FINDINGS = "intake_findings_total"
RECEIPTS = "intake_receipts_total"
PRODUCE_DURATION = "intake_produce_duration_seconds"
PRODUCE_ERRORS = "intake_produce_errors_total"
EVENTS_APPLIED = "intake_events_applied_total"
APPLY_DURATION = "intake_apply_duration_seconds"
CONSUMER_LAG = "intake_consumer_lag_records"
CONSUMER_HEALTHY = "intake_consumer_healthy"
INTEGRITY_FINDINGS = "intake_integrity_findings_total"
POISON_RECORDS = "intake_poison_records_total"
QUARANTINE_RECORDS = "intake_quarantine_records"
WEBHOOK_DELIVERIES = "intake_webhook_deliveries_total"
STORE_ERRORS = "intake_store_errors_total"
CONSUMER_RESTARTS = "intake_consumer_restarts_total"
CONSUMER_STOPS = "intake_consumer_stops_total"
READY = "intake_ready"
CODELIST_VERSION = "intake_codelist_version_info"
BUILD_INFO = "intake_build_info"
COVERAGE_EXPECTED = "intake_coverage_expected_units"
COVERAGE_DELIVERED = "intake_coverage_delivered_units"
COVERAGE_SILENT = "intake_coverage_silent_units"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # as exposed; counters end in _total
    type: MetricType
    labels: tuple[str, ...]
    help: str


CATALOGUE: tuple[MetricSpec, ...] = (
    MetricSpec(
        HTTP_REQUESTS,
        "counter",
        ("route", "method", "status_class"),
        "HTTP requests by route template, method and status class (2xx, 4xx, 5xx).",
    ),
    MetricSpec(HTTP_DURATION, "histogram", ("route",), "HTTP request latency by route template."),
    MetricSpec(
        ITEMS,
        "counter",
        ("message_type", "version", "outcome"),
        "Items received by message type, version and outcome (accepted, rejected).",
    ),
    MetricSpec(
        FINDINGS,
        "counter",
        ("rule_id", "severity"),
        "Validation findings by rule id and severity; severity=error rejected the item.",
    ),
    MetricSpec(
        RECEIPTS,
        "counter",
        ("message_type", "version", "status"),
        "Receipts issued with 202, by message type, version and status at issue "
        "(accepted, partially_accepted, rejected).",
    ),
    MetricSpec(
        PRODUCE_DURATION,
        "histogram",
        (),
        "Time to have one message's records stored by the event log.",
    ),
    MetricSpec(
        PRODUCE_ERRORS,
        "counter",
        (),
        "Messages the event log could not store (answered 503).",
    ),
    MetricSpec(
        EVENTS_APPLIED,
        "counter",
        ("message_type", "result"),
        "Events consumed by the projector, by message type and result (applied, duplicate).",
    ),
    MetricSpec(
        APPLY_DURATION,
        "histogram",
        (),
        "Time to apply one batch of events to the state store.",
    ),
    MetricSpec(
        CONSUMER_LAG,
        "gauge",
        ("consumer", "topic"),
        "Records not yet consumed (log end offsets minus the consumer's positions), "
        "by consumer and topic.",
    ),
    MetricSpec(
        CONSUMER_HEALTHY,
        "gauge",
        ("consumer",),
        "1 while the consumer runs, 0 while it is starting or paused after an error.",
    ),
    MetricSpec(
        CONSUMER_RESTARTS,
        "counter",
        ("consumer", "reason"),
        "Times a consumer restarted itself after a failure, by consumer and reason (the "
        "exception's type): log or store unavailable, a broker lost mid-call, an unexpected "
        "error.",
    ),
    MetricSpec(
        CONSUMER_STOPS,
        "counter",
        ("consumer", "reason"),
        "Times a consumer stopped for good (systemic poison, a configuration error), by consumer "
        "and reason; the process then exits with code 3.",
    ),
    MetricSpec(
        INTEGRITY_FINDINGS,
        "counter",
        ("message_type", "rule_id"),
        "Integrity findings the projector made, by message type and rule id.",
    ),
    MetricSpec(
        POISON_RECORDS,
        "counter",
        ("consumer",),
        "Records a consumer could not read and moved to quarantine, by consumer.",
    ),
    MetricSpec(
        QUARANTINE_RECORDS,
        "gauge",
        (),
        "The quarantine topic's size in offsets: the sum of its partitions' end offsets.",
    ),
    MetricSpec(
        WEBHOOK_DELIVERIES,
        "counter",
        ("outcome",),
        "Webhook delivery attempts by outcome (delivered, failed, parked).",
    ),
    MetricSpec(
        STORE_ERRORS,
        "counter",
        ("component",),
        "State-store (database or disk) operations that failed, by component.",
    ),
    MetricSpec(
        READY,
        "gauge",
        ("check",),
        "1 when the readiness check passes, 0 when it fails "
        "(event_log, store, consumer:projector, consumer:webhooks, consumer:quarantine).",
    ),
    MetricSpec(
        CODELIST_VERSION,
        "gauge",
        ("codelist", "version", "sample"),
        "Always 1: the newest version (effective date) of each code list in use.",
    ),
    MetricSpec(BUILD_INFO, "gauge", ("version",), "Always 1: the running register-intake version."),
    MetricSpec(
        COVERAGE_EXPECTED,
        "gauge",
        ("message_type",),
        "Units obliged to report the message type yesterday (in Norway; statestore/obligations).",
    ),
    MetricSpec(
        COVERAGE_DELIVERED,
        "gauge",
        ("message_type",),
        "Of those, the units that delivered a validated message of the type yesterday.",
    ),
    MetricSpec(
        COVERAGE_SILENT,
        "gauge",
        ("message_type",),
        "Obliged units with no delivery of the type in the last 3 days (or never).",
    ),
)

SPECS: dict[str, MetricSpec] = {spec.name: spec for spec in CATALOGUE}

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HasHealth(Protocol):
    @property
    def healthy(self) -> bool: ...


class CodeListLike(Protocol):
    """What :meth:`Metrics.record_codelists` reads of a code list."""

    @property
    def id(self) -> str: ...

    @property
    def sample(self) -> bool: ...

    @property
    def versions(self) -> Sequence[date]: ...


def _counter(name: str, registry: CollectorRegistry) -> Counter:
    spec = SPECS[name]
    return Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=registry)


def _gauge(name: str, registry: CollectorRegistry) -> Gauge:
    spec = SPECS[name]
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


def _histogram(name: str, registry: CollectorRegistry) -> Histogram:
    spec = SPECS[name]
    return Histogram(spec.name, spec.help, spec.labels, buckets=_LATENCY_BUCKETS, registry=registry)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http_requests = _counter(HTTP_REQUESTS, registry)
        self.http_duration = _histogram(HTTP_DURATION, registry)
        self.items = _counter(ITEMS, registry)
        self.findings = _counter(FINDINGS, registry)
        self.receipts = _counter(RECEIPTS, registry)
        self.produce_duration = _histogram(PRODUCE_DURATION, registry)
        self.produce_errors = _counter(PRODUCE_ERRORS, registry)
        self.events_applied = _counter(EVENTS_APPLIED, registry)
        self.apply_duration = _histogram(APPLY_DURATION, registry)
        self.consumer_lag = _gauge(CONSUMER_LAG, registry)
        self.consumer_healthy = _gauge(CONSUMER_HEALTHY, registry)
        self.integrity_findings = _counter(INTEGRITY_FINDINGS, registry)
        self.poison_records = _counter(POISON_RECORDS, registry)
        self.quarantine_records = _gauge(QUARANTINE_RECORDS, registry)
        self.webhook_deliveries = _counter(WEBHOOK_DELIVERIES, registry)
        self.store_errors = _counter(STORE_ERRORS, registry)
        self.consumer_restarts = _counter(CONSUMER_RESTARTS, registry)
        self.consumer_stops = _counter(CONSUMER_STOPS, registry)
        self.ready = _gauge(READY, registry)
        self.codelist_version = _gauge(CODELIST_VERSION, registry)
        self.build_info = _gauge(BUILD_INFO, registry)
        self.coverage_expected = _gauge(COVERAGE_EXPECTED, registry)
        self.coverage_delivered = _gauge(COVERAGE_DELIVERED, registry)
        self.coverage_silent = _gauge(COVERAGE_SILENT, registry)

        self.build_info.labels(__version__).set(1)
        for outcome in get_args(WebhookOutcome):
            self.webhook_deliveries.labels(outcome)
        for consumer in get_args(ConsumerName):
            self.poison_records.labels(consumer)
            # The reasons every consumer meets in a failover or a store restart, at 0 from the
            # start (others appear when they happen).
            for reason in ("LogUnavailableError", "OperationalError", "DBAPIError"):
                self.consumer_restarts.labels(consumer, reason)
            self.consumer_stops.labels(consumer, "TooManyPoisonRecordsError")
        for component in get_args(Component):
            self.store_errors.labels(component)

    def watch_consumer(self, name: ConsumerName, consumer: HasHealth) -> None:
        """Expose ``consumer.healthy`` as ``intake_consumer_healthy{consumer=name}``."""
        self.consumer_healthy.labels(name).set_function(lambda: float(consumer.healthy))

    def record_readiness(self, checks: Mapping[str, str]) -> None:
        """Record a readiness evaluation (check name -> "ok" or the reason it is not)."""
        for check, state in checks.items():
            self.ready.labels(check).set(1 if state == "ok" else 0)

    def record_codelists(self, codelists: Iterable[CodeListLike]) -> None:
        """Record the code lists validation now uses, replacing what was recorded before."""
        self.codelist_version.clear()
        for codelist in codelists:
            versions = codelist.versions
            newest = max(versions).isoformat() if versions else "none"
            self.codelist_version.labels(
                codelist.id, newest, "true" if codelist.sample else "false"
            ).set(1)

    def record_coverage(
        self, message_type: str, expected: int, delivered: int, silent: int
    ) -> None:
        """Yesterday's coverage of one message type: a label per message type, never per unit."""
        self.coverage_expected.labels(message_type).set(expected)
        self.coverage_delivered.labels(message_type).set(delivered)
        self.coverage_silent.labels(message_type).set(silent)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> Callable[[], None]:
    """Serve ``registry`` over HTTP on ``host:port`` (any path answers) from a thread, for
    processes without the gateway's ``/metrics`` (``intake consume``). Returns ``stop``."""
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
