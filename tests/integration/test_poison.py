"""Unreadable records: moved to quarantine with their error, the stream goes on; systemic poison
stops the projector instead."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry

from consumers.projector import PoisonGuard, TooManyPoisonRecordsError
from eventlog.port import ProduceRecord
from tests.integration.helpers import appointment, wait_for_status


async def test_an_unreadable_record_goes_to_quarantine_and_the_stream_goes_on(
    client: httpx.AsyncClient, auth: dict[str, str], registry: CollectorRegistry
) -> None:
    runtime = client._transport.app.state.runtime  # type: ignore[attr-defined]
    topic = runtime.topics.accepted("HST_Avtale", 1)
    await runtime.event_log.produce([ProduceRecord(topic, b"974152533\x1fX", b"\xc3\x01garbage")])
    receipt = (
        await client.post(
            "/v1/messages/HST_Avtale/1", json=appointment("after-poison"), headers=auth
        )
    ).json()
    await wait_for_status(client, receipt["receipt_id"], auth, {"applied"})

    consumer = runtime.event_log.consumer("test-reader", [runtime.topics.quarantine])
    await consumer.start()
    try:
        records = await consumer.getmany(max_records=10, timeout=2.0)
    finally:
        await consumer.close()
    poison = [r for r in records if r.header("kind") == b"poison"]
    assert len(poison) == 1
    moved = runtime.catalogue.codecs.decode(poison[0].value)
    assert (moved["consumer"], moved["topic"], moved["value"]) == (
        "projector",
        topic,
        b"\xc3\x01garbage",
    )
    assert "UnknownSchemaError" in moved["error"]
    assert (
        registry.get_sample_value("intake_poison_records_total", {"consumer": "projector"}) == 1.0
    )


def test_poison_guard_stops_on_a_run_of_poison() -> None:
    guard = PoisonGuard(max_consecutive=3, max_ratio=1.0)
    for _ in range(3):
        guard.record(poison=True)
    guard.record(poison=False)  # the run is broken
    for _ in range(3):
        guard.record(poison=True)
    with pytest.raises(TooManyPoisonRecordsError, match="in a row"):
        guard.record(poison=True)


def test_poison_guard_stops_on_a_high_share() -> None:
    guard = PoisonGuard(max_consecutive=100, max_ratio=0.2, window=100, min_records=50)
    for i in range(49):
        guard.record(poison=i % 3 == 0)  # a third is poison, but too few records to judge yet
    with pytest.raises(TooManyPoisonRecordsError, match="unreadable"):
        guard.record(poison=True)  # the 50th record: now the share counts
