"""Projector into PostgreSQL: ``StateRepository.apply`` (events, re-fold, objects, versions,
integrity findings and offsets in one transaction per batch) against a bare asyncpg bulk write
of the same rows, on the same server, in the same run.

Target (DESIGN §12): ours ≥ 0.5× "a bare bulk upsert of the same rows", counted in input events
per second. The reference writes every row the projector must write for the batch (the new
``events`` rows, the ``objects`` rows, and the ``object_versions`` rows that change), computed
beforehand, with plain ``executemany`` and no reads and no fold. A stricter second reference
upserts the ``objects`` rows alone. Both references' tables are compared with ours afterwards
(objects and versions), so the figures always compare the same results.

    python -m bench.bench_projector [--record] [--database-url URL] [--events N] [--profile]

Without ``--database-url`` (or ``INTAKE_TEST_POSTGRES_URL``) it starts its own PostgreSQL
(``deploy/postgres/postgres.sh``) in a temporary directory and stops it at the end. Each
measurement runs on a new database with the project's migrations; every database it creates is
dropped again. ``--profile`` adds one more run of ours under cProfile and prints its top
functions to stderr (not recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import cProfile
import dataclasses
import hashlib
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.machine import header
from consumers.fold import FOLDS
from eventlog.port import TopicPartition
from eventlog.topics import Topics
from schemas.catalogue import Catalogue, MessageModel, load_catalogue
from schemas.events import Event, event_for_item, receipt_id_for
from statestore.engine import create_engines
from statestore.history import Fold, FoldStep, HistoryEntry, ObjectKey, fold_order
from statestore.migrate import upgrade
from statestore.projection import SourcedEvent, StateRepository
from validators.codelists import CodeListRegistry, load_samples
from validators.engine import ModelValidator, ValidationContext
from validators.findings import has_errors
from validators.structure import ExtractedItem
from wiring.runtime import settle_heap

EVENTS = 20_000
BATCH_SIZE = 500  # the projector's default projector_batch_size
ROUNDS = 3
# Every object's events come in twice, half the stream apart, so most re-folds read history
# that earlier batches stored.
REPEAT = 2
UNIT = "974152533"
CONSUMER = "projector"
PARTITIONS = 3
MODELS = ("HST_Avtale", "IPLOS_Tjenestehendelse")
ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SH = ROOT / "deploy" / "postgres" / "postgres.sh"
GOAL = 0.5

# The statement a hand-written projector would use: every column of ``objects``.
UPSERT = """
INSERT INTO objects (unit, message_type, object_id, version, state, deleted, event_count,
                     last_event_id, valid_time, updated_at, context, clinical_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (unit, message_type, object_id) DO UPDATE SET
    version = EXCLUDED.version, state = EXCLUDED.state, deleted = EXCLUDED.deleted,
    event_count = EXCLUDED.event_count, last_event_id = EXCLUDED.last_event_id,
    valid_time = EXCLUDED.valid_time, updated_at = EXCLUDED.updated_at,
    context = EXCLUDED.context, clinical_time = EXCLUDED.clinical_time
"""
INSERT_EVENT = """
INSERT INTO events (event_id, unit, message_type, version, object_id, action, valid_time,
                    recorded_time, clinical_time, receipt_id, item_index, context, payload,
                    source_topic, source_partition, source_offset, applied_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
"""
UPSERT_VERSION = """
INSERT INTO object_versions (unit, message_type, object_id, valid_from, valid_to, state, deleted,
                             context, clinical_time, event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (unit, message_type, object_id, valid_from) DO UPDATE SET
    valid_to = EXCLUDED.valid_to, state = EXCLUDED.state, deleted = EXCLUDED.deleted,
    context = EXCLUDED.context, clinical_time = EXCLUDED.clinical_time,
    event_id = EXCLUDED.event_id
"""
DELETE_VERSION = """
DELETE FROM object_versions
WHERE unit = $1 AND message_type = $2 AND object_id = $3 AND valid_from = $4
"""
# What both sides must have written: everything but updated_at (a wall-clock time).
_COMPARE = (
    "SELECT unit, message_type, object_id, version, coalesce(state::text, 'null') AS state, "
    "deleted, event_count, last_event_id, valid_time, coalesce(context::text, 'null') AS context, "
    "clinical_time FROM objects ORDER BY unit, message_type, object_id"
)
_COMPARE_VERSIONS = (
    "SELECT unit, message_type, object_id, valid_from, valid_to, "
    "coalesce(state::text, 'null') AS state, deleted, coalesce(context::text, 'null') AS context, "
    "clinical_time, event_id FROM object_versions "
    "ORDER BY unit, message_type, object_id, valid_from"
)


@dataclass(frozen=True, slots=True)
class Batch:
    events: list[SourcedEvent]
    next_offsets: dict[TopicPartition, int]
    # The objects rows the projector writes for this batch (unit, type, id, version, state,
    # deleted, event_count, last_event_id, valid_time, context, clinical_time): the reference.
    rows: list[tuple[Any, ...]]
    # For the second reference: the new events rows (less applied_at, added at run time), the
    # object_versions rows that change (upserted) and those that go (deleted, by key).
    event_rows: list[tuple[Any, ...]]
    version_rows: list[tuple[Any, ...]]
    gone_versions: list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Stream:
    batches: list[Batch]
    events: int
    objects: int
    object_rows: int
    by_type: dict[str, int]

    @property
    def version_rows(self) -> int:
        return sum(len(b.version_rows) for b in self.batches)


# --- the stream ------------------------------------------------------------------------------


def _templates(catalogue: Catalogue) -> list[tuple[MessageModel, list[ExtractedItem]]]:
    """The valid items of each shipped valid example of the benchmark's models."""
    ctx = ValidationContext(
        now=datetime(2026, 1, 15, 12, 0, tzinfo=UTC),
        allow_synthetic=False,
        codelists=CodeListRegistry(load_samples()),
    )
    templates = []
    for message_type in MODELS:
        model = catalogue.require(message_type, 1)
        validator = ModelValidator(model)
        for example in model.examples:
            if not example.valid:
                continue
            result = validator.validate(copy.deepcopy(example.message), ctx)
            assert not has_errors(result.message_findings), example.name
            items = [i for i in result.items if i.value is not None]
            assert items, example.name
            templates.append((model, items))
    return templates


def _with_object_id(value: dict[str, Any], dotted: str, suffix: str) -> dict[str, Any]:
    value = copy.deepcopy(value)
    *parents, last = dotted.split(".")
    node = value
    for part in parents:
        node = node[part]
    node[last] = f"{node[last]}-{suffix}"
    return value


def _events(n: int) -> list[Event]:
    """``n`` events: the examples again and again, each copy with its own object ids, each group
    of object ids used by ``REPEAT`` copies half the stream apart. Models with fewer example
    items are copied more often, so that each model gives about as many events."""
    templates = _templates(load_catalogue())
    per_model: dict[str, int] = {}
    for model, items in templates:
        per_model[model.message_type] = per_model.get(model.message_type, 0) + len(items)
    most = max(per_model.values())
    units = [
        (model, items, copy_no)
        for model, items in templates
        for copy_no in range(max(1, round(most / per_model[model.message_type])))
    ]
    per_cycle = sum(len(items) for _, items, _ in units)
    cycles = -(-n // per_cycle)
    groups = max(1, -(-cycles // REPEAT))
    started = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    out: list[Event] = []
    for cycle in range(cycles):
        for u, (model, items, copy_no) in enumerate(units):
            suffix = f"b{cycle % groups:06d}c{copy_no}"
            body = f"bench-projector\x1f{cycle}\x1f{u}"
            body_sha256 = hashlib.sha256(body.encode()).hexdigest()
            receipt_id = receipt_id_for(UNIT, f"sha256:{body_sha256}")
            recorded = started + timedelta(seconds=cycle * len(units) + u)
            for item in items:
                assert item.value is not None
                value = _with_object_id(item.value, item.spec.object_id_field, suffix)
                out.append(
                    event_for_item(
                        model,
                        dataclasses.replace(item, value=value),
                        unit=UNIT,
                        receipt_id=receipt_id,
                        body_sha256=body_sha256,
                        recorded_time=recorded,
                    )
                )
    return out[:n]


def _history_entry(e: Event) -> HistoryEntry:
    # As the projector reads it back: PostgreSQL returns times in UTC.
    return HistoryEntry(
        e.event_id,
        e.version,
        e.action,
        e.valid_time.astimezone(UTC),
        e.recorded_time.astimezone(UTC),
        e.payload,
        e.item_index,
        e.context,
        e.clinical_time,
    )


def _versions(key: ObjectKey, steps: Sequence[FoldStep]) -> dict[datetime, tuple[Any, ...]]:
    """An object's versions by valid_from: the last step at each valid time, lasting until the
    next valid time (written here from the definition, not taken from the projector)."""
    last_at: dict[datetime, FoldStep] = {}
    for step in steps:
        last_at[step.entry.valid_time] = step
    starts = sorted(last_at)
    return {
        start: (
            *key,
            start,
            starts[i + 1] if i + 1 < len(starts) else None,
            last_at[start].state,
            last_at[start].deleted,
            last_at[start].entry.context,
            last_at[start].entry.clinical_time,
            last_at[start].entry.event_id,
        )
        for i, start in enumerate(starts)
    }


def _event_row(s: SourcedEvent) -> tuple[Any, ...]:
    e = s.event
    return (
        e.event_id,
        e.unit,
        e.message_type,
        e.version,
        e.object_id,
        e.action,
        e.valid_time,
        e.recorded_time,
        e.clinical_time,
        e.receipt_id,
        e.item_index,
        e.context,
        e.payload,
        s.topic,
        s.partition,
        s.offset,
    )


def build_stream(n: int, folds: Mapping[str, Fold]) -> Stream:
    """Batches as the projector would consume them, and the rows each batch yields."""
    topics = Topics("intake")
    offsets: dict[TopicPartition, int] = {}
    sourced: list[SourcedEvent] = []
    by_type: dict[str, int] = {}
    for event in _events(n):
        tp = TopicPartition(
            topics.accepted(event.message_type, event.version),
            zlib.crc32(event.key) % PARTITIONS,
        )
        offset = offsets.get(tp, 0)
        offsets[tp] = offset + 1
        sourced.append(SourcedEvent(event, tp.topic, tp.partition, offset))
        by_type[event.message_type] = by_type.get(event.message_type, 0) + 1
    histories: dict[ObjectKey, list[HistoryEntry]] = {}
    versions: dict[ObjectKey, dict[datetime, tuple[Any, ...]]] = {}
    seen: set[str] = set()
    batches = []
    for start in range(0, len(sourced), BATCH_SIZE):
        chunk = sourced[start : start + BATCH_SIZE]
        next_offsets = {TopicPartition(s.topic, s.partition): s.offset + 1 for s in chunk}
        touched: set[ObjectKey] = set()
        event_rows = []
        for s in chunk:
            e = s.event
            if e.event_id in seen:
                continue
            seen.add(e.event_id)
            key = (e.unit, e.message_type, e.object_id)
            histories.setdefault(key, []).append(_history_entry(e))
            touched.add(key)
            event_rows.append(_event_row(s))
        rows, version_rows, gone_versions = [], [], []
        for key in sorted(touched):
            history = histories[key]
            history.sort(key=fold_order)
            result = folds[key[1]](history)
            last = result.last
            before, after = versions.get(key, {}), _versions(key, result.steps)
            versions[key] = after
            version_rows += [row for start, row in after.items() if before.get(start) != row]
            gone_versions += [(*key, start) for start in before if start not in after]
            rows.append(
                (
                    *key,
                    last.entry.version,
                    last.state,
                    last.deleted,
                    len(history),
                    last.entry.event_id,
                    last.entry.valid_time,
                    last.entry.context,
                    last.entry.clinical_time,
                )
            )
        batches.append(Batch(chunk, next_offsets, rows, event_rows, version_rows, gone_versions))
    return Stream(
        batches,
        len(sourced),
        len(histories),
        sum(len(b.rows) for b in batches),
        by_type,
    )


# --- the server and its databases ----------------------------------------------------------


@contextlib.contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    """``url`` as given, or a throwaway server of our own, always stopped and removed."""
    if url:
        yield url
        return
    run_dir = Path(tempfile.mkdtemp(prefix="bench-projector-", dir="/tmp"))
    run_dir.chmod(0o755)
    try:
        started = subprocess.run(  # noqa: S603 (our own script, fixed arguments)
            [str(POSTGRES_SH), "start", str(run_dir)],
            check=False,
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            sys.stderr.write(started.stderr)
            raise RuntimeError(f"{POSTGRES_SH} start failed ({started.returncode})")
        yield started.stdout.strip().splitlines()[-1]
    finally:
        try:
            subprocess.run(  # noqa: S603
                [str(POSTGRES_SH), "stop", str(run_dir)], check=False, capture_output=True
            )
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


def connect_args(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    return {
        "user": parsed.username,
        "password": parsed.password,
        "host": parsed.host,
        "port": parsed.port,
        "database": parsed.database,
    }


class Databases:
    """New databases on one server, each migrated to the newest schema; all dropped at the end."""

    def __init__(self, server_url: str) -> None:
        self._server_url = server_url
        self._created: list[str] = []

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(**connect_args(self._server_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def fresh(self) -> str:
        name = f"bench_projector_{uuid.uuid4().hex[:12]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        url = make_url(self._server_url).set(database=name).render_as_string(hide_password=False)
        await upgrade(url)
        return url

    async def drop_all(self) -> None:
        while self._created:
            name = self._created.pop()
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def databases(server_url: str) -> AsyncIterator[Databases]:
    dbs = Databases(server_url)
    try:
        yield dbs
    finally:
        await dbs.drop_all()


# --- the measurements ------------------------------------------------------------------------


async def run_ours(url: str, stream: Stream, folds: Mapping[str, Fold]) -> float:
    """Seconds for ``StateRepository.apply`` over every batch (connection pool warmed first)."""
    engines = create_engines(url)
    try:
        async with engines.writer.connect() as conn:
            await conn.execute(text("SELECT 1"))
        repo = StateRepository(engines)
        started = time.perf_counter()
        for batch in stream.batches:
            await repo.apply(CONSUMER, batch.events, batch.next_offsets, folds)
        return time.perf_counter() - started
    finally:
        await engines.dispose()


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _plain_connection(url: str) -> Any:
    conn = await asyncpg.connect(**connect_args(url))
    await conn.set_type_codec("jsonb", encoder=_json, decoder=orjson.loads, schema="pg_catalog")
    return conn


async def run_reference(url: str, stream: Stream) -> float:
    """Seconds for a bare upsert of the same objects rows: executemany per batch, one
    transaction per batch, plain asyncpg."""
    conn = await _plain_connection(url)
    try:
        started = time.perf_counter()
        for batch in stream.batches:
            now = datetime.now(UTC)
            rows = [(*r[:9], now, *r[9:]) for r in batch.rows]
            async with conn.transaction():
                await conn.executemany(UPSERT, rows)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def run_all_rows_reference(url: str, stream: Stream) -> float:
    """Seconds for bare writes of every row the projector must write: the new events (insert),
    the objects rows (upsert) and the versions that change (upsert; delete those that go),
    executemany per table, one transaction per batch, plain asyncpg."""
    conn = await _plain_connection(url)
    try:
        started = time.perf_counter()
        for batch in stream.batches:
            now = datetime.now(UTC)
            async with conn.transaction():
                await conn.executemany(INSERT_EVENT, [(*r, now) for r in batch.event_rows])
                await conn.executemany(UPSERT, [(*r[:9], now, *r[9:]) for r in batch.rows])
                if batch.gone_versions:
                    await conn.executemany(DELETE_VERSION, batch.gone_versions)
                await conn.executemany(UPSERT_VERSION, batch.version_rows)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def written_rows(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The objects and object_versions rows, in a comparable form."""
    conn = await asyncpg.connect(**connect_args(url))
    try:
        return (
            [tuple(r) for r in await conn.fetch(_COMPARE)],
            [tuple(r) for r in await conn.fetch(_COMPARE_VERSIONS)],
        )
    finally:
        await conn.close()


@dataclass
class Measured:
    ours: list[float]
    reference: list[float]
    all_rows: list[float]
    # Rows (objects, then versions) in which a reference's tables differ from ours, per round.
    differing: list[int]

    @property
    def same_rows(self) -> bool:
        return not any(self.differing)


def _differing(a: Sequence[tuple[Any, ...]], b: Sequence[tuple[Any, ...]]) -> int:
    return len(set(a) ^ set(b))


async def measure(server_url: str, stream: Stream, folds: Mapping[str, Fold]) -> Measured:
    measured = Measured([], [], [], [])
    async with databases(server_url) as dbs:
        for _ in range(ROUNDS):
            ours_url = await dbs.fresh()
            measured.ours.append(await run_ours(ours_url, stream, folds))
            reference_url = await dbs.fresh()
            measured.reference.append(await run_reference(reference_url, stream))
            all_rows_url = await dbs.fresh()
            measured.all_rows.append(await run_all_rows_reference(all_rows_url, stream))
            ours_objects, ours_versions = await written_rows(ours_url)
            reference_objects, _ = await written_rows(reference_url)
            all_objects, all_versions = await written_rows(all_rows_url)
            measured.differing.append(
                _differing(ours_objects, reference_objects)
                + _differing(ours_objects, all_objects)
                + _differing(ours_versions, all_versions)
            )
            await dbs.drop_all()
    return measured


async def profile_ours(server_url: str, stream: Stream, folds: Mapping[str, Fold]) -> str:
    """cProfile of one run of ours on a fresh database: the top functions by own and by
    cumulative time."""
    async with databases(server_url) as dbs:
        url = await dbs.fresh()
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            await run_ours(url, stream, folds)
        finally:
            profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    return out.getvalue()


# --- the report ------------------------------------------------------------------------------


def report(stream: Stream, measured: Measured, elapsed: float) -> list[str]:
    ours, reference, all_rows = (
        min(measured.ours),
        min(measured.reference),
        min(measured.all_rows),
    )
    n, batches = stream.events, len(stream.batches)
    ours_rate, reference_rate, all_rows_rate = n / ours, n / reference, n / all_rows
    ratio = ours_rate / reference_rate
    all_rows_ratio = ours_rate / all_rows_rate
    mix = ", ".join(f"{t} {c:,}" for t, c in sorted(stream.by_type.items()))
    runs = "; ".join(
        f"{name} " + ", ".join(f"{s:.2f}" for s in times)
        for name, times in (
            ("ours", measured.ours),
            ("objects only", measured.reference),
            ("all rows", measured.all_rows),
        )
    )
    check = (
        "yes"
        if measured.same_rows
        else f"**NO** ({max(measured.differing)} rows differ: the figures compare different work)"
    )
    return [
        "",
        f"### Projector into PostgreSQL (events/s, best of {ROUNDS}, each run on a new database)",
        "",
        f"- stream: {n:,} events ({mix}) on {stream.objects:,} objects "
        f"({n / stream.objects:.1f} events per object), {batches} batches of {BATCH_SIZE}; "
        f"the batches touch objects {stream.object_rows:,} times (objects rows upserted)",
        "- ours: `StateRepository.apply` per batch — insert the events, read the stored history "
        "of the touched objects, re-fold them, upsert `objects`, write the `object_versions` and "
        "`integrity_findings` that change, store the offsets; one transaction per batch",
        f"- reference (DESIGN §12, a bare bulk upsert of the same rows): plain asyncpg "
        f"`executemany` per table of every row the projector must write — the {n:,} new "
        f"`events` rows (insert), the `objects` rows (upsert) and the {stream.version_rows:,} "
        f"`object_versions` rows that change (upsert), computed beforehand; no reads, no fold; "
        f"one transaction per batch; counted per input event ({BATCH_SIZE} per batch) like ours",
        "- stricter second reference (objects only): the same `INSERT ... ON CONFLICT DO UPDATE` "
        "of the `objects` rows alone, a third of the rows ours writes",
        f"- same `objects` and `object_versions` rows written by ours and the references: {check}",
        f"- runs (s): {runs}; whole benchmark {elapsed:.0f} s",
        "",
        "| | ours (projector) | reference (bare writes of the same rows) | ours/reference "
        "| objects rows only (bare upsert) | ours/objects only |",
        "|---|---|---|---|---|---|",
        f"| input events/s | {ours_rate:,.0f} | {all_rows_rate:,.0f} | **{all_rows_ratio:.2f}×** "
        f"(goal ≥ {GOAL}×{'' if all_rows_ratio >= GOAL else ', missed'}) "
        f"| {reference_rate:,.0f} | {ratio:.2f}× |",
        f"| objects rows/s | {stream.object_rows / ours:,.0f} | "
        f"{stream.object_rows / all_rows:,.0f} | {all_rows_ratio:.2f}× "
        f"| {stream.object_rows / reference:,.0f} | {ratio:.2f}× |",
        f"| best run (s) | {ours:.2f} | {all_rows:.2f} | | {reference:.2f} | |",
    ]


def record(lines: Sequence[str]) -> None:
    results = Path(__file__).with_name("RESULTS.md")
    if not results.exists():
        results.write_text("# Benchmark results\n\nAppended by `make bench`.\n", encoding="utf-8")
    with results.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_projector", description=__doc__)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("INTAKE_TEST_POSTGRES_URL"),
        help="a PostgreSQL server to use (SQLAlchemy URL; default: INTAKE_TEST_POSTGRES_URL, "
        "as deploy/with-services.sh exports it)",
    )
    parser.add_argument("--events", type=int, default=EVENTS, help="events in the stream")
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of ours (stderr)"
    )
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    started = time.perf_counter()
    folds = {m.message_type: FOLDS[m.fold] for m in load_catalogue()}
    stream = build_stream(args.events, folds)
    # As the projector process does once it has loaded what it keeps; here the stream is kept
    # too, which the collector would otherwise walk again and again (ours and references alike).
    settle_heap()
    with postgres_server(args.database_url) as server_url:
        measured = asyncio.run(measure(server_url, stream, folds))
        profile = asyncio.run(profile_ours(server_url, stream, folds)) if args.profile else ""
    out = [
        "",
        "## Projector benchmark",
        *header(),
        *report(stream, measured, time.perf_counter() - started),
    ]
    print("\n".join(out))
    if profile:
        sys.stderr.write(profile)
    if args.record:
        record(out)


if __name__ == "__main__":
    main()
