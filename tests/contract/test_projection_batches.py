"""Applying a stream batch by batch gives, after every batch, exactly what folding each object's
whole history from scratch gives: state, versions and integrity findings. This holds whichever
way the store gets there (new objects, events appended after the stored ones, late events that
re-fold everything), on every store."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from consumers.fold import fold_iplos_service, fold_replace
from schemas.events import CARE_TIMEZONE, Event
from statestore.engine import StoreEngines, create_engines
from statestore.history import Fold, HistoryEntry, fold_order, history_entry
from statestore.migrate import upgrade
from statestore.projection import SourcedEvent, StateRepository
from statestore.tables import integrity_findings, object_versions, objects
from tests.conftest import fresh_postgres_database, require_service

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
UNIT = "974152533"
FOLDS: dict[str, Fold] = {"HST_Avtale": fold_replace, "IPLOS_Tjenestehendelse": fold_iplos_service}
REPLACE_ACTIONS = ("upsert", "upsert", "supplement", "delete", "annul", "restore")
SERVICE_ACTIONS = ("service_started", "provider_changed", "stop_from", "stop_to", "service_ended")


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
async def engines(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreEngines]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'state.sqlite3'}"
    else:
        url = await fresh_postgres_database(
            require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL")
        )
    await upgrade(url)
    engines = create_engines(url)
    yield engines
    await engines.dispose()


def _stream(rng: random.Random, count: int) -> list[Event]:
    """Events on a few objects of both kinds, with valid times that often tie (same day, or
    the same instant in another time zone) and recorded times in arrival order."""
    out = []
    for i in range(count):
        message_type = rng.choice(sorted(FOLDS))
        object_id = f"{message_type[:4]}-{rng.randrange(5)}"
        valid = T0 + timedelta(days=rng.randrange(6))
        if rng.random() < 0.3:
            valid = valid.astimezone(CARE_TIMEZONE)  # the same instant, kept with its offset
        if message_type == "HST_Avtale":
            action = rng.choice(REPLACE_ACTIONS)
            payload: dict[str, Any] = {"avtaleId": object_id, "status": i, "koder": [i % 3]}
        else:
            action = rng.choice(SERVICE_ACTIONS)
            payload = {"tjenesteId": object_id, "stoppId": f"S{i % 2}", "n": i}
        out.append(
            Event(
                event_id=f"{UNIT}-{i:04d}",
                receipt_id=f"r-{i // 3}",
                item_index=i % 3,
                unit=UNIT,
                message_type=message_type,
                version=1,
                object_id=object_id,
                action=action,
                valid_time=valid,
                recorded_time=T0 + timedelta(days=10, seconds=i),
                clinical_time=valid.date().isoformat(),
                context={"orgNr": UNIT, "i": i},
                payload=payload,
                payload_type="bench.Item",
            )
        )
    return out


def _expected(applied: Sequence[Event]) -> list[Any]:
    """Objects, versions and findings folded from scratch, as in ``_stored``."""
    histories: dict[tuple[str, str], list[HistoryEntry]] = {}
    for e in applied:
        entry = dataclasses.replace(
            history_entry(e),
            valid_time=e.valid_time.astimezone(UTC),
            recorded_time=e.recorded_time.astimezone(UTC),
        )
        histories.setdefault((e.message_type, e.object_id), []).append(entry)
    objs, versions, findings = [], [], []
    for (message_type, object_id), history in histories.items():
        result = FOLDS[message_type](sorted(history, key=fold_order))
        last = result.last
        objs.append(
            (message_type, object_id, last.state, last.deleted, len(history), last.entry.event_id)
        )
        by_start = {step.entry.valid_time: step for step in result.steps}
        starts = sorted(by_start)
        for i, start in enumerate(starts):
            step = by_start[start]
            end = starts[i + 1] if i + 1 < len(starts) else None
            versions.append(
                (message_type, object_id, start, end, step.state, step.deleted, step.entry.event_id)
            )
        findings += [(message_type, object_id, v.event_id, v.rule_id) for v in result.violations]
    return [sorted(objs, key=repr), sorted(versions, key=repr), sorted(findings)]


async def _stored(engines: StoreEngines) -> list[Any]:
    async with engines.reader.connect() as conn:
        objs = [
            (r.message_type, r.object_id, r.state, r.deleted, r.event_count, r.last_event_id)
            for r in await conn.execute(select(objects))
        ]
        v = object_versions
        versions = [
            (r.message_type, r.object_id, r.valid_from, r.valid_to, r.state, r.deleted, r.event_id)
            for r in await conn.execute(select(v))
        ]
        f = integrity_findings
        findings = [
            (r.message_type, r.object_id, r.event_id, r.rule_id)
            for r in await conn.execute(select(f))
        ]
    return [sorted(objs, key=repr), sorted(versions, key=repr), sorted(findings)]


@pytest.mark.parametrize("seed", range(4))
async def test_every_batch_leaves_what_a_fold_from_scratch_gives(
    engines: StoreEngines, seed: int
) -> None:
    rng = random.Random(seed)
    stream = _stream(rng, 60)
    # Mostly in order, as events usually arrive, with some late ones and redeliveries.
    arrived = list(stream)
    for _ in range(8):
        i, j = rng.randrange(len(arrived)), rng.randrange(len(arrived))
        arrived[i], arrived[j] = arrived[j], arrived[i]
    arrived += rng.sample(stream, 6)
    repo = StateRepository(engines)
    applied: dict[str, Event] = {}
    offset = 0
    while arrived:
        size = rng.randint(1, 7)
        batch, arrived = arrived[:size], arrived[size:]
        sourced = [SourcedEvent(e, "t", 0, offset + i) for i, e in enumerate(batch)]
        result = await repo.apply("p", sourced, {}, FOLDS)
        offset += size
        new = {e.event_id for e in batch if e.event_id not in applied}
        assert result.applied_event_ids == new
        applied.update({e.event_id: e for e in batch})
        assert await _stored(engines) == _expected(list(applied.values())), f"offset {offset}"


async def test_findings_are_reported_for_the_batch_s_new_events_only(
    engines: StoreEngines,
) -> None:
    def service(i: int, action: str, day: int) -> Event:
        return Event(
            event_id=f"{UNIT}-s{i}",
            receipt_id=f"r-{i}",
            item_index=0,
            unit=UNIT,
            message_type="IPLOS_Tjenestehendelse",
            version=1,
            object_id="S-1",
            action=action,
            valid_time=T0 + timedelta(days=day),
            recorded_time=T0 + timedelta(days=30, seconds=i),
            clinical_time=None,
            context={},
            payload={"tjenesteId": "S-1"},
            payload_type="bench.Item",
        )

    repo = StateRepository(engines)
    ended = service(0, "service_ended", 5)  # never started: INT-001
    first = await repo.apply("p", [SourcedEvent(ended, "t", 0, 0)], {}, FOLDS)
    assert first.violations == (("IPLOS_Tjenestehendelse", "INT-001"),)
    # Appended after it: a stop-to with no open stop; the stored finding is not reported again.
    stop_to = service(1, "stop_to", 6)
    second = await repo.apply("p", [SourcedEvent(stop_to, "t", 0, 1)], {}, FOLDS)
    assert second.violations == (("IPLOS_Tjenestehendelse", "INT-002"),)
    # A late start re-folds everything: INT-001 goes away, the stop-to's finding stays.
    started = service(2, "service_started", 1)
    third = await repo.apply("p", [SourcedEvent(started, "t", 0, 2)], {}, FOLDS)
    assert third.violations == ()
    stored = (await _stored(engines))[2]
    assert [(event_id, rule) for _, _, event_id, rule in stored] == [(stop_to.event_id, "INT-002")]
