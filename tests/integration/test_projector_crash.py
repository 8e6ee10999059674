"""The projector killed with SIGKILL at random moments while it applies a stream, ten times:
after the last restart every event is applied exactly once, and the state equals the pure fold
of the unique events. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from consumers.fold import FOLDS
from eventlog.embedded import EmbeddedEventLog
from eventlog.port import ProduceRecord
from eventlog.topics import Topics
from schemas.catalogue import load_catalogue
from schemas.events import Event
from statestore.engine import create_engines
from statestore.history import HistoryEntry, fold_order, history_entry
from statestore.migrate import upgrade
from statestore.tables import consumer_offsets, events, objects
from tests.conftest import fresh_postgres_database, require_service

pytestmark = pytest.mark.slow

INTAKE = str(Path(sys.executable).parent / "intake")
KILLS = 10
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _stream(count: int, seed: int) -> list[Event]:
    """IPLOS events for many services, in a shuffled order of arrival."""
    rng = random.Random(seed)
    model = load_catalogue().require("IPLOS_Tjenestehendelse", 1)
    record_names = {s.action: s.record_name for s in model.item_specs}
    out = []
    actions = ["service_started", "provider_changed", "stop_from", "stop_to", "service_ended"]
    for i in range(count):
        service = f"S-{i % 150}"
        action = actions[(i // 150) % len(actions)]
        out.append(
            Event(
                event_id=f"ev-{i}",
                receipt_id=f"r-{i // 50}",
                item_index=i % 50,
                unit="974152533",
                message_type="IPLOS_Tjenestehendelse",
                version=1,
                object_id=service,
                action=action,
                valid_time=T0 + timedelta(days=i // 150, hours=rng.randint(0, 5)),
                recorded_time=T0 + timedelta(days=100, seconds=i),
                clinical_time=None,
                context={"orgNr": "974152533", "kommuneNr": "4601", "bydelNr": None},
                payload=_payload(action, service, i),
                payload_type=record_names[action],
            )
        )
    return out


def _payload(action: str, service: str, i: int) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tjenesteId": service,
        "hendelseId": None,
        "tjenesteType": "21",
        "hendelseDato": "2024-01-01",
        "hendelseRegTid": "2024-01-01T12:00:00+01:00",
        "person": {"personId": f"P-{service}", "fodselsNr": None, "dNr": None},
    }
    if action in ("service_started", "provider_changed"):
        base["tjenesteutforer"] = {"lokalId": f"U-{i}", "orgNr": None, "navn": None}
    if action in ("stop_from", "stop_to"):
        base["stoppId"] = f"X-{service}"
    return base


class Consumer:
    def __init__(self, data_dir: Path, database_url: str | None, log: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
        self.env["INTAKE_PROJECTOR_BATCH_SIZE"] = "5"
        self.env["INTAKE_CONSUMER_POLL_SECONDS"] = "0.05"
        if database_url:
            self.env["INTAKE_DATABASE_URL"] = database_url
        self.args = [INTAKE, "consume", "projector", "--data-dir", str(data_dir)]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)


@pytest.fixture
def consumers() -> Iterator[list[Consumer]]:
    started: list[Consumer] = []
    yield started
    for consumer in started:
        if consumer.process is not None and consumer.process.poll() is None:
            consumer.process.kill()
            consumer.process.wait()


async def _run(tmp_path: Path, database_url: str, consumers: list[Consumer]) -> None:
    data_dir = tmp_path / "data"
    await upgrade(database_url)
    stream = _stream(3000, seed=7)
    # Some events are delivered twice, as a producer's retry would.
    deliveries = stream + random.Random(1).sample(stream, 200)
    random.Random(2).shuffle(deliveries)
    model = load_catalogue().require("IPLOS_Tjenestehendelse", 1)
    topic = Topics("intake").accepted("IPLOS_Tjenestehendelse", 1)
    log = EmbeddedEventLog(data_dir / "eventlog.sqlite3")
    await log.start()
    engines = create_engines(database_url)
    consumer = Consumer(
        data_dir,
        None if database_url.startswith("sqlite") else database_url,
        tmp_path / "consumer.log",
    )
    consumers.append(consumer)
    rng = random.Random(3)
    killed_mid_stream = 0
    try:
        await log.produce(
            [ProduceRecord(topic, e.key, model.event_codec.encode(e.to_avro())) for e in deliveries]
        )
        produced = len(deliveries)
        consumer.start()
        for _ in range(KILLS):
            # Kill at a random moment once the restarted process applies again (start-up takes
            # a second or more, longer on a busy machine), so every kill lands mid-stream.
            before = await _applied_offsets(engines)
            for _ in range(600):
                if await _applied_offsets(engines) > before:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            consumer.kill()
            if 0 < await _applied_offsets(engines) < produced:
                killed_mid_stream += 1
            consumer.start()
        for _ in range(1200):
            if await _applied_offsets(engines) == produced:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"projector never caught up:\n{consumer.log.read_text()[-3000:]}")
        consumer.kill(signal.SIGTERM)
        assert killed_mid_stream >= KILLS // 2, "the kills should land while work is pending"

        async with engines.reader.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
            rows = {r.object_id: r for r in await conn.execute(select(objects))}
        assert count == len(stream)  # every event once, none twice
        histories: dict[str, list[HistoryEntry]] = {}
        for e in stream:
            histories.setdefault(e.object_id, []).append(history_entry(e))
        fold = FOLDS["iplos_service"]
        for object_id, history in histories.items():
            expected = fold(sorted(history, key=fold_order))
            row = rows[object_id]
            assert (row.state, row.event_count) == (expected.last.state, len(history)), object_id
    finally:
        await log.close()
        await engines.dispose()


async def _applied_offsets(engines: Any) -> int:
    async with engines.reader.connect() as conn:
        total = (
            await conn.execute(select(func.coalesce(func.sum(consumer_offsets.c.next_offset), 0)))
        ).scalar_one()
    return int(total)


async def test_killed_projector_applies_every_event_once_sqlite(
    tmp_path: Path, consumers: list[Consumer]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'state.sqlite3'}"
    (tmp_path / "data").mkdir()
    await _run(tmp_path, url, consumers)
    sqlite3.connect(tmp_path / "data" / "state.sqlite3").execute("PRAGMA integrity_check")


@pytest.mark.postgres
async def test_killed_projector_applies_every_event_once_postgres(
    tmp_path: Path, consumers: list[Consumer]
) -> None:
    url = await fresh_postgres_database(require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL"))
    (tmp_path / "data").mkdir()
    await _run(tmp_path, url, consumers)
