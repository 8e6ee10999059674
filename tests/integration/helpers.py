"""Helpers for tests that talk to the API."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from eventlog.embedded import EmbeddedEventLog
from eventlog.port import EventLog
from wiring.settings import Settings

MODELS = Path(__file__).resolve().parents[2] / "schemas" / "models"


def example_message(
    name: str = "valid/example.json", model: str = "HST_Avtale/1"
) -> list[dict[str, Any]]:
    path = MODELS / model / "examples" / name
    return copy.deepcopy(json.loads(path.read_text(encoding="utf-8")))


def appointment(
    object_id: str, *, status: int = 1, journal: str | None = None, unit: str = "974152533"
) -> list[dict[str, Any]]:
    """One appointment; ``status`` must be in the attendance code list (1-4)."""
    return [
        {
            "orgNr": unit,
            "kommuneNr": "0301",
            "avtale": [
                {
                    "avtaleId": object_id,
                    "datoTid": "2024-05-10T09:30:00+02:00",
                    "konsultasjonType": "PQ",
                    "journalId": journal,
                    "oppmoteStatus": status,
                    "avdeling": {"lokalenhetId": "HS-1"},
                    "person": {"personId": f"P-{object_id}", "fodselsNr": "15031245610"},
                }
            ],
        }
    ]


async def wait_for_status(
    client: httpx.AsyncClient,
    receipt_id: str,
    headers: dict[str, str],
    statuses: set[str],
    timeout: float = 20.0,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        response = await client.get(f"/v1/receipts/{receipt_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in statuses:
            return body
        if loop.time() > deadline:
            raise AssertionError(f"receipt stayed {body['status']}, wanted {statuses}")
        await asyncio.sleep(0.05)


async def count_records(log: EventLog, topic: str, *, timeout: float = 20.0) -> int:
    """How many records ``topic`` holds, read from the beginning with a group of its own until
    every position reaches the end offset (on Kafka, end offsets also count transaction markers,
    so they are not a record count)."""
    ends = await log.end_offsets(topic)
    consumer = log.consumer(f"count-{uuid.uuid4().hex[:8]}", [topic])
    await consumer.start()
    try:
        count = 0
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            count += len(await consumer.getmany(max_records=1000, timeout=0.2))
            positions = consumer.positions()
            if all(positions.get(tp, 0) >= end for tp, end in ends.items()):
                return count
            assert asyncio.get_running_loop().time() < deadline, (positions, ends)
    finally:
        await consumer.close()


async def records_in_log(
    settings: Settings,
    topics: tuple[str, ...] = ("intake.accepted.HST_Avtale.v1", "intake.quarantine"),
) -> int:
    """How many records the embedded log holds in ``topics`` (accepted and quarantined
    HST_Avtale items by default): what a refused request must not have changed."""
    log = EmbeddedEventLog(settings.embedded_log_path)
    await log.start()
    try:
        return sum([sum((await log.end_offsets(t)).values()) for t in topics])
    finally:
        await log.close()
