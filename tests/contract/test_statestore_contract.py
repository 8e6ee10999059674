"""The state-store contract. Every store runs these same tests: add its URL factory to
``STORES`` below."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from consumers.fold import fold_iplos_service, fold_replace
from eventlog.port import TopicPartition
from schemas.events import Event
from statestore.engine import StoreEngines, create_engines
from statestore.history import FoldResult, HistoryEntry
from statestore.migrate import upgrade
from statestore.projection import SourcedEvent, StateRepository
from statestore.receipts import (
    Completeness,
    NewReceipt,
    NewReceiptItem,
    ReceiptRepository,
    ReceiptView,
)
from statestore.tables import metadata
from tests.conftest import fresh_postgres_database, require_service

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
FOLDS = {"HST_Avtale": fold_replace}


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'state.sqlite3'}"


async def _sqlite_store(tmp_path: Path) -> str:
    return _sqlite(tmp_path)


async def _postgres_store(tmp_path: Path) -> str:
    return await fresh_postgres_database(require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL"))


STORES: dict[str, Callable[[Path], Awaitable[str]]] = {
    "sqlite": _sqlite_store,
    "postgresql": _postgres_store,
}


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.postgres] if name == "postgresql" else [])
        for name in sorted(STORES)
    ]
)
async def engines(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreEngines]:
    url = await STORES[request.param](tmp_path)
    await upgrade(url)
    engines = create_engines(url)
    yield engines
    await engines.dispose()


def _event(
    object_id: str,
    *,
    status: int,
    valid: datetime,
    recorded: datetime,
    action: str = "upsert",
    receipt_id: str = "r-1",
    index: int = 0,
    unit: str = "974152533",
) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        receipt_id=receipt_id,
        item_index=index,
        unit=unit,
        message_type="HST_Avtale",
        version=1,
        object_id=object_id,
        action=action,
        valid_time=valid,
        recorded_time=recorded,
        clinical_time=None,
        context={"orgNr": unit},
        payload={"avtaleId": object_id, "oppmoteStatus": status},
        payload_type="no.kpr.hst.avtale.v1.Avtale",
    )


def _sourced(events: Sequence[Event], start: int = 0) -> list[SourcedEvent]:
    return [SourcedEvent(e, "t", 0, start + i) for i, e in enumerate(events)]


async def test_migrations_create_exactly_the_declared_tables(engines: StoreEngines) -> None:
    def diff(conn: Connection) -> list[object]:
        # The GiST index over valid-time ranges (migration 0004) exists on PostgreSQL only.
        def declared(obj: object, name: str | None, *_: object) -> bool:
            return name != "ix_object_versions_during"

        context = MigrationContext.configure(conn, opts={"include_object": declared})
        return list(compare_metadata(context, metadata))

    async with engines.writer.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_upgrade_is_idempotent(engines: StoreEngines) -> None:
    await upgrade(engines.writer.url.render_as_string(hide_password=False))


async def test_apply_stores_history_state_and_offsets_together(engines: StoreEngines) -> None:
    repo = StateRepository(engines)
    tp = TopicPartition("t", 0)
    e1 = _event("A", status=1, valid=T0, recorded=T0)
    e2 = _event("A", status=2, valid=T0 + timedelta(hours=1), recorded=T0 + timedelta(hours=1))
    result = await repo.apply("projector", _sourced([e1, e2]), {tp: 2}, FOLDS)
    assert result.applied == 2
    state = await repo.get_object("974152533", "HST_Avtale", "A")
    assert state is not None
    assert (state.state, state.event_count, state.last_event_id) == (e2.payload, 2, e2.event_id)
    assert state.valid_time == e2.valid_time
    assert await repo.load_offsets("projector") == {tp: 2}
    assert await repo.load_offsets("someone-else") == {}


async def test_duplicates_change_nothing(engines: StoreEngines) -> None:
    repo = StateRepository(engines)
    e1 = _event("A", status=1, valid=T0, recorded=T0)
    await repo.apply("projector", _sourced([e1]), {TopicPartition("t", 0): 1}, FOLDS)
    again = await repo.apply(
        "projector", _sourced([e1, e1], start=1), {TopicPartition("t", 0): 3}, FOLDS
    )
    assert (again.applied, again.duplicates) == (0, 2)
    assert await repo.count_events() == 1
    state = await repo.get_object("974152533", "HST_Avtale", "A")
    assert state is not None
    assert state.event_count == 1


async def test_a_late_event_refolds_by_valid_time(engines: StoreEngines) -> None:
    repo = StateRepository(engines)
    folds = {"IPLOS_Tjenestehendelse": fold_iplos_service}

    def service_event(action: str, valid: datetime, recorded: datetime) -> Event:
        return dataclasses.replace(
            _event("S-1", status=0, valid=valid, recorded=recorded),
            message_type="IPLOS_Tjenestehendelse",
            action=action,
            payload={"tjenesteId": "S-1"},
        )

    ended = service_event("service_ended", T0 + timedelta(days=30), T0)
    started = service_event("service_started", T0, T0 + timedelta(days=40))  # arrives late
    await repo.apply("p", _sourced([ended]), {}, folds)
    await repo.apply("p", _sourced([started], start=1), {}, folds)
    state = await repo.get_object("974152533", "IPLOS_Tjenestehendelse", "S-1")
    assert state is not None
    assert state.state is not None
    assert state.state["tjenesteStatus"] == "ended"  # valid time decides, not arrival
    assert state.event_count == 2


async def test_a_correction_follows_what_it_corrects(engines: StoreEngines) -> None:
    # Replace models take arrival as valid time, so an M report that moves the contact's own
    # date earlier still comes after the original.
    repo = StateRepository(engines)
    original = _event("A", status=1, valid=T0, recorded=T0)
    later = T0 + timedelta(days=1)
    correction = _event("A", status=2, valid=later, recorded=later)
    await repo.apply("p", _sourced([correction, original]), {}, FOLDS)
    state = await repo.get_object("974152533", "HST_Avtale", "A")
    assert state is not None
    assert state.state == correction.payload


async def test_a_failed_batch_leaves_nothing_behind(engines: StoreEngines) -> None:
    repo = StateRepository(engines)

    def broken_fold(history: Sequence[HistoryEntry]) -> FoldResult:
        raise RuntimeError("fold failed")

    with pytest.raises(RuntimeError):
        await repo.apply(
            "p",
            _sourced([_event("A", status=1, valid=T0, recorded=T0)]),
            {TopicPartition("t", 0): 1},
            {"HST_Avtale": broken_fold},
        )
    assert await repo.count_events() == 0
    assert await repo.load_offsets("p") == {}
    assert await repo.get_object("974152533", "HST_Avtale", "A") is None


def _receipt(receipt_id: str, body: str, events: Sequence[Event]) -> NewReceipt:
    items = [
        NewReceiptItem(
            e.item_index, f"/0/avtale/{e.item_index}", e.object_id, e.event_id, "accepted", []
        )
        for e in events
    ]
    items.append(
        NewReceiptItem(len(items), "/0/avtale/9", None, None, "rejected", [{"rule_id": "STR-001"}])
    )
    return NewReceipt(
        receipt_id=receipt_id,
        unit="974152533",
        message_type="HST_Avtale",
        version=1,
        vendor="Vendor",
        software="EPJ",
        software_version="1.0",
        idempotency_key="k",
        body_sha256=body,
        received_at=T0,
        items=items,
    )


async def test_receipt_lifecycle_and_derived_statuses(engines: StoreEngines) -> None:
    receipts = ReceiptRepository(engines)
    state = StateRepository(engines)
    e = _event("A", status=1, valid=T0, recorded=T0, receipt_id="r-1")
    assert await receipts.reserve(_receipt("r-1", "a" * 64, [e])) == ("created", "received")
    assert await receipts.reserve(_receipt("r-1", "a" * 64, [e])) == ("existing", "received")
    assert await receipts.reserve(_receipt("r-1", "b" * 64, [e])) == ("conflict", "received")
    view = await receipts.get("r-1")
    assert view is not None
    assert view.status == "received"

    await receipts.mark_validated("r-1", "974152533")
    view = await receipts.get("r-1")
    assert view is not None
    assert (view.status, [i.status for i in view.items]) == (
        "partially_accepted",
        ["accepted", "rejected"],
    )

    await state.apply("p", _sourced([e]), {}, FOLDS)
    view = await receipts.get("r-1")
    assert view is not None
    assert (view.status, [i.status for i in view.items]) == (
        "partially_applied",
        ["applied", "rejected"],
    )
    assert view.counts == {"items": 2, "accepted": 1, "rejected": 1, "applied": 1, "duplicate": 0}

    # The same event reported again under another receipt is a duplicate there.
    await receipts.reserve(_receipt("r-2", "c" * 64, [e]))
    await receipts.mark_validated("r-2", "974152533")
    view = await receipts.get("r-2")
    assert view is not None
    assert [i.status for i in view.items] == ["duplicate", "rejected"]
    assert await receipts.get("missing") is None


async def test_reserved_receipt_keeps_every_item_and_its_header(engines: StoreEngines) -> None:
    receipts = ReceiptRepository(engines)
    events = [
        _event(f"O-{i}", status=1, valid=T0, recorded=T0, receipt_id="r-many", index=i)
        for i in range(600)
    ]
    receipt = dataclasses.replace(_receipt("r-many", "d" * 64, events), sequence=2**40)
    assert await receipts.reserve(receipt) == ("created", "received")
    # A second reservation finds the first and adds nothing.
    assert await receipts.reserve(receipt) == ("existing", "received")
    view = await receipts.get("r-many")
    assert view is not None
    stored, sent = view.as_dict(), ReceiptView.preview(receipt, stage="received").as_dict()
    assert stored["submission"] == sent["submission"]
    assert [{**i, "status": None} for i in stored["items"]] == [
        {**i, "status": None} for i in sent["items"]
    ]
    assert [i.status for i in view.items] == ["received"] * 600 + ["rejected"]
    assert await Completeness(engines).sequences("974152533") == [2**40]


async def test_timestamps_come_back_in_utc(engines: StoreEngines) -> None:
    repo = StateRepository(engines)
    oslo = datetime(2024, 5, 10, 9, 30, tzinfo=UTC).astimezone()
    e = _event("A", status=1, valid=oslo, recorded=oslo)
    await repo.apply("p", _sourced([e]), {}, FOLDS)
    state = await repo.get_object("974152533", "HST_Avtale", "A")
    assert state is not None
    assert state.valid_time == oslo
    assert state.valid_time.tzinfo is UTC


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    await upgrade(url)
    engines = create_engines(url)
    try:
        async with engines.writer.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
            busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
        assert (mode, fks, busy) == ("wal", 1, 15000)
        # BEGIN IMMEDIATE: a write transaction holds the write lock from its first statement.
        import sqlite3

        async with engines.writer.begin() as conn:
            await conn.execute(text("SELECT 1"))
            other = sqlite3.connect(tmp_path / "state.sqlite3", timeout=0.05)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
    finally:
        await engines.dispose()


async def test_arrival_order_breaks_ties_within_a_batch(engines: StoreEngines) -> None:
    repo = StateRepository(engines)
    same = [_event("A", status=s, valid=T0, recorded=T0, index=s) for s in (1, 2, 3)]
    await repo.apply("p", _sourced(same), {}, FOLDS)
    state = await repo.get_object("974152533", "HST_Avtale", "A")
    assert state is not None
    assert state.state == same[-1].payload


def _service_events(unit: str) -> list[Event]:
    """A few IPLOS services' events, with same-day events and one late correction of order."""
    plan: list[tuple[str, str, int, dict[str, Any]]] = [
        ("S-1", "service_started", 0, {"tjenesteType": "21"}),
        ("S-1", "provider_changed", 10, {"tjenesteutforer": {"lokalId": "B"}}),
        ("S-1", "stop_from", 20, {"stoppId": "X"}),
        ("S-1", "stop_to", 25, {"stoppId": "X"}),
        ("S-1", "service_ended", 40, {}),
        ("S-2", "service_started", 5, {"tjenesteType": "15"}),
        ("S-2", "stop_from", 5, {"stoppId": "Y"}),
        ("S-3", "service_ended", 30, {}),  # never started: INT-001
    ]
    out = []
    for i, (service, action, day, payload) in enumerate(plan):
        event = _event(
            service,
            status=0,
            valid=T0 + timedelta(days=day),
            recorded=T0 + timedelta(days=50, seconds=i),
            index=i,
            unit=unit,
        )
        out.append(
            dataclasses.replace(
                event,
                event_id=f"{unit}-{i}",
                message_type="IPLOS_Tjenestehendelse",
                action=action,
                payload={"tjenesteId": service, **payload},
                context={"orgNr": unit, "kommuneNr": "4601"},
            )
        )
    return out


async def _snapshot(engines: StoreEngines, unit: str) -> list[Any]:
    from sqlalchemy import select as sa_select

    from statestore.tables import integrity_findings, object_versions, objects

    async with engines.reader.connect() as conn:
        objs = sorted(
            (r.object_id, r.state, r.deleted, r.event_count)
            for r in await conn.execute(sa_select(objects).where(objects.c.unit == unit))
        )
        versions = sorted(
            (r.object_id, r.valid_from, r.valid_to, r.state)
            for r in await conn.execute(
                sa_select(object_versions).where(object_versions.c.unit == unit)
            )
        )
        findings = sorted(
            (r.object_id, r.rule_id, r.event_id.split("-", 1)[1])
            for r in await conn.execute(
                sa_select(integrity_findings).where(integrity_findings.c.unit == unit)
            )
        )
    return [objs, versions, findings]


async def test_any_arrival_order_and_batching_with_duplicates_gives_one_result(
    engines: StoreEngines,
) -> None:
    import random

    repo = StateRepository(engines)
    folds = {"IPLOS_Tjenestehendelse": fold_iplos_service}
    reference = None
    for seed in range(6):
        unit = f"97415{seed:04d}"
        stream = _service_events(unit)
        rng = random.Random(seed)
        arrived = stream + rng.sample(stream, k=3)  # redelivered duplicates
        rng.shuffle(arrived)
        offset = 0
        while arrived:
            size = rng.randint(1, 4)
            batch, arrived = arrived[:size], arrived[size:]
            await repo.apply("p", _sourced(batch, start=offset), {}, folds)
            offset += size
        snapshot = await _snapshot(engines, unit)
        if reference is None:
            reference = snapshot
            assert [o[0] for o in snapshot[0]] == ["S-1", "S-2", "S-3"]
            assert snapshot[2] == [("S-3", "INT-001", "7")]
        assert snapshot == reference, f"seed {seed}"


async def test_state_as_of_and_known_at(engines: StoreEngines) -> None:
    repo = StateRepository(engines)
    stream = _service_events("974152533")
    await repo.apply("p", _sourced(stream[:2]), {}, {"IPLOS_Tjenestehendelse": fold_iplos_service})
    known = T0 + timedelta(days=50, seconds=1)
    await repo.apply(
        "p", _sourced(stream[2:], start=2), {}, {"IPLOS_Tjenestehendelse": fold_iplos_service}
    )
    args = ("974152533", "IPLOS_Tjenestehendelse", "S-1", fold_iplos_service)
    now = await repo.state_at(*args)
    assert now is not None
    assert (now.state or {})["tjenesteStatus"] == "ended"
    mid = await repo.state_at(*args, valid_before=T0 + timedelta(days=21))
    assert mid is not None
    assert ((mid.state or {})["tjenesteStatus"], mid.event_count) == ("paused", 3)
    then = await repo.state_at(*args, known_at=known)
    assert then is not None
    assert ((then.state or {})["tjenesteStatus"], then.event_count) == ("active", 2)
    assert await repo.state_at(*args, valid_before=T0) is None


async def test_point_in_time_statistics_from_versions(engines: StoreEngines) -> None:
    repo = StateRepository(engines)
    await repo.apply(
        "p",
        _sourced(_service_events("974152533")),
        {},
        {"IPLOS_Tjenestehendelse": fold_iplos_service},
    )
    dims = [("tjenesteStatus", "state", "tjenesteStatus"), ("kommuneNr", "context", "kommuneNr")]

    async def at(day: int) -> list[dict[str, Any]]:
        return await repo.stats(
            "IPLOS_Tjenestehendelse", at=T0 + timedelta(days=day), group_by=dims
        )

    assert await at(3) == [{"tjenesteStatus": "active", "kommuneNr": "4601", "count": 1}]
    assert await at(22) == [{"tjenesteStatus": "paused", "kommuneNr": "4601", "count": 2}]
    assert await at(45) == [
        {"tjenesteStatus": "ended", "kommuneNr": "4601", "count": 2},
        {"tjenesteStatus": "paused", "kommuneNr": "4601", "count": 1},
    ]
    active = await repo.stats(
        "IPLOS_Tjenestehendelse", at=T0 + timedelta(days=3), group_by=[], status="active"
    )
    assert active == [{"count": 1}]


async def test_feed_never_skips_a_change_that_commits_late(engines: StoreEngines) -> None:
    from statestore.feed import START, ReceiptFeed, append_changes

    feed = ReceiptFeed(engines)
    if engines.dialect != "postgresql":
        pytest.skip("SQLite serialises writers: a late commit cannot happen")
    late = await engines.writer.connect()
    early_tx = await late.begin()
    await append_changes(late, [("974152533", "r-late", "validated")])  # takes its id first
    async with engines.writer.begin() as conn:
        await append_changes(conn, [("974152533", "r-quick", "validated")])
    assert await feed.read(START, 10) == []  # r-quick waits behind the open transaction
    await early_tx.commit()
    await late.close()
    seen = [c.receipt_id for c in await feed.read(START, 10)]
    assert seen == ["r-late", "r-quick"]
