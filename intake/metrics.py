"""The metrics catalogue: every metric's name, help text and labels, in one place.

Labels have bounded values only (routes, message types, outcomes, rule ids) — never a unit or a
person. Pass a fresh ``CollectorRegistry`` in tests.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

HTTP_REQUESTS = "intake_http_requests_total"
HTTP_DURATION = "intake_http_request_duration_seconds"
ITEMS = "intake_items_total"
FINDINGS = "intake_findings_total"
PRODUCE_DURATION = "intake_produce_duration_seconds"
PRODUCE_ERRORS = "intake_produce_errors_total"
EVENTS_APPLIED = "intake_events_applied_total"
APPLY_DURATION = "intake_apply_duration_seconds"
CONSUMER_LAG = "intake_consumer_lag_records"
INTEGRITY_FINDINGS = "intake_integrity_findings_total"
POISON_RECORDS = "intake_poison_records_total"
WEBHOOK_DELIVERIES = "intake_webhook_deliveries_total"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http_requests = Counter(
            HTTP_REQUESTS.removesuffix("_total"),
            "HTTP requests by route template, method and status class.",
            ["route", "method", "status_class"],
            registry=registry,
        )
        self.http_duration = Histogram(
            HTTP_DURATION,
            "HTTP request latency by route template.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.items = Counter(
            ITEMS.removesuffix("_total"),
            "Items received by message type, version and outcome (accepted, rejected).",
            ["message_type", "version", "outcome"],
            registry=registry,
        )
        self.findings = Counter(
            FINDINGS.removesuffix("_total"),
            "Validation findings by rule id and severity.",
            ["rule_id", "severity"],
            registry=registry,
        )
        self.produce_duration = Histogram(
            PRODUCE_DURATION,
            "Time to have one message's records stored by the event log.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.produce_errors = Counter(
            PRODUCE_ERRORS.removesuffix("_total"),
            "Messages the event log could not store (answered 503).",
            registry=registry,
        )
        self.events_applied = Counter(
            EVENTS_APPLIED.removesuffix("_total"),
            "Events consumed by the projector, by message type and result (applied, duplicate).",
            ["message_type", "result"],
            registry=registry,
        )
        self.apply_duration = Histogram(
            APPLY_DURATION,
            "Time to apply one batch of events to the state store.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.integrity_findings = Counter(
            INTEGRITY_FINDINGS.removesuffix("_total"),
            "Integrity findings the projector made, by message type and rule id.",
            ["message_type", "rule_id"],
            registry=registry,
        )
        self.poison_records = Counter(
            POISON_RECORDS.removesuffix("_total"),
            "Records a consumer could not read and moved to quarantine, by consumer.",
            ["consumer"],
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            WEBHOOK_DELIVERIES.removesuffix("_total"),
            "Webhook delivery attempts by outcome (delivered, failed, parked).",
            ["outcome"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            CONSUMER_LAG,
            "Records not yet consumed, by consumer and topic.",
            ["consumer", "topic"],
            registry=registry,
        )
