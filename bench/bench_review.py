"""Review pages for quality staff at national scale: one ``intake serve`` process (embedded event
log, SQLite store) holding 20,000 rejected items (seven problems from three vendors,
``bench/review_data.py``), its pages and API timed from an httpx client on loopback.

    python -m bench.bench_review [--items 20000] [--runs 5] [--record]

What it measures (wall time of a whole request and its body, as the client sees it):

* the triage page ``GET /review/problems`` (target ≤ 1 s);
* the item list ``GET /review/items``, whole and filtered by vendor and rule (≤ 2 s);
* the statistics page ``GET /review/stats``: no filter, by rule, by level, and by vendor and
  problem (≤ 3 s each);
* the CSV export of the whole filter ``GET /v1/review/items.csv`` (≤ 15 s), streamed, its data
  rows counted (they must be every item), with the server's resident memory before and after
  (``VmRSS``, peak ``VmHWM``): the export is streamed chunk by chunk, so memory stays flat;
* the reference, measured in the same rounds: ``GET /healthz`` (the bare HTTP round trip to the
  same process); each figure is also given as a multiple of its median.

Each request is made once first (the "first" column: cold caches, not counted in the median),
then ``--runs`` rounds go over every page in turn; the median and the slowest of those rounds are
reported. The exports run after the pages, so the memory figures are the export's alone. Exits
non-zero if any median is over its target. The server, the client and SQLite share this
machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.machine import header
from bench.review_data import PROBLEMS, seed
from statestore.engine import create_engines
from wiring.settings import Settings

UNIT = "974152533"
REVIEWER = "kari.kvalitet"
ITEMS = 20_000
RUNS = 5
INTAKE = Path(sys.executable).with_name("intake")
REFERENCE = "/healthz"
CSV_PATH = "/v1/review/items.csv"
CSV_TARGET_MS = 15_000.0
BOM = b"\xef\xbb\xbf"
CSV_FIRST_HEADER = "Element-id;"
READY_SECONDS = 60.0
TIMEOUT = httpx.Timeout(120.0)


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    target_ms: float | None  # None: the reference


@dataclass
class Timings:
    case: Case
    first: float = 0.0  # seconds
    runs: list[float] = field(default_factory=list)
    matched: int | None = None  # items in the filter (from the JSON API), where it has one

    @property
    def median_ms(self) -> float:
        return statistics.median(self.runs) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.runs) * 1000

    @property
    def over(self) -> bool:
        return self.case.target_ms is not None and self.median_ms > self.case.target_ms


@dataclass(frozen=True)
class Memory:
    rss_kib: int
    hwm_kib: int


@dataclass
class Results:
    items: int
    runs: int
    seed_seconds: float
    largest: str  # the largest problem: its id and what it is
    largest_cgm: str
    pages: list[Timings]
    export: Timings
    export_rows: list[int]
    export_bytes: int
    memory_before: Memory
    memory_after: Memory
    elapsed: float = 0.0


# --- the server --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    data_dir: Path
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        # This process's INTAKE_* settings are not passed on: the server's store is the data
        # dir's SQLite file, the one seeded here. The rate limit is lifted for the client.
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
        env["INTAKE_RATE_LIMIT_PER_MINUTE"] = str(10**9)
        return env

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own command, fixed arguments)
                [
                    str(INTAKE),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_SECONDS
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"server exited ({self.process.returncode}):\n{self._log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server not ready within {READY_SECONDS:.0f} s:\n{self._log_tail()}")

    def token(self) -> str:
        out = subprocess.run(  # noqa: S603 (our own command, fixed arguments)
            [
                str(INTAKE),
                "dev-token",
                "--orgnr",
                UNIT,
                "--data-dir",
                str(self.data_dir),
                "--scope",
                "intake:review",
                "--subject",
                REVIEWER,
            ],
            env=self.env(),
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def memory(self) -> Memory:
        fields: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
        return Memory(fields["VmRSS"], fields["VmHWM"])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


async def seed_store(data_dir: Path, items: int) -> float:
    """Seed the server's store (already migrated by it); returns the seconds it took."""
    url = Settings(data_dir=data_dir, database_url=None).resolved_database_url
    engines = create_engines(url)
    started = time.perf_counter()
    try:
        indexed = await seed(engines, items)
    finally:
        await engines.dispose()
    seconds = time.perf_counter() - started
    if indexed != items:
        raise RuntimeError(f"seeded {indexed} items, not {items}")
    return seconds


# --- requests ----------------------------------------------------------------------------------


async def timed_get(client: httpx.AsyncClient, path: str) -> float:
    started = time.perf_counter()
    response = await client.get(path)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:500]}")
    return seconds


class RowCounter:
    """Counts the records of a CSV stream fed in chunks: a line break ends a record unless it
    is inside quotes (an even number of quote characters so far; a quote in a cell is doubled)."""

    def __init__(self) -> None:
        self.records = 0
        self.quotes = 0
        self.pending = False  # bytes after the last record's line break
        self.start = b""  # the stream's first bytes, for the BOM and the header

    def feed(self, chunk: bytes) -> None:
        if len(self.start) < 64:
            self.start += chunk[: 64 - len(self.start)]
        *lines, rest = chunk.split(b"\n")
        for line in lines:
            self.quotes += line.count(b'"')
            if self.quotes % 2 == 0:
                self.records += 1
                self.pending = False
        self.quotes += rest.count(b'"')
        if rest:
            self.pending = True

    def finish(self) -> int:
        """The data rows (records after the header)."""
        if not self.start.startswith(BOM):
            raise RuntimeError(f"the export does not start with a BOM: {self.start!r}")
        if not self.start[len(BOM) :].decode("utf-8", "replace").startswith(CSV_FIRST_HEADER):
            raise RuntimeError(f"the export does not start with its header: {self.start!r}")
        return self.records + (1 if self.pending else 0) - 1


async def timed_export(client: httpx.AsyncClient) -> tuple[float, int, int]:
    """Stream the whole export: (seconds, data rows, bytes)."""
    counter = RowCounter()
    size = 0
    started = time.perf_counter()
    async with client.stream("GET", CSV_PATH) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"GET {CSV_PATH}: {response.status_code} {response.text[:500]}")
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            counter.feed(chunk)
    seconds = time.perf_counter() - started
    return seconds, counter.finish(), size


async def json_get(client: httpx.AsyncClient, path: str) -> dict[str, object]:
    response = await client.get(path)
    response.raise_for_status()
    body = response.json()
    assert isinstance(body, dict)
    return body


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


async def largest_problem(client: httpx.AsyncClient, query: str = "") -> tuple[str, str]:
    body = await json_get(client, f"/v1/review/problems{query}")
    problems = body["problems"]
    assert isinstance(problems, list), body
    assert problems, body
    top = max(problems, key=lambda p: p["items"])
    value = "" if top["value"] is None else f"={top['value']}"
    described = (
        f"`{top['problem']}` ({top['rule_id']} {top['field']}{value}, "
        f"{top['vendor']} {top['software']} {top['software_version']}, {top['items']:,} items)"
    )
    return str(top["problem"]), described


async def matched_by_stats(client: httpx.AsyncClient, query: str) -> int:
    body = await json_get(client, f"/v1/review/stats{query}")
    days = body["rejected_by_day"]
    assert isinstance(days, list)
    return sum(_int(d["rejected"]) for d in days)


async def matched_by_list(client: httpx.AsyncClient, query: str) -> int:
    return _int((await json_get(client, f"/v1/review/items{query}"))["total"])


# --- the run -----------------------------------------------------------------------------------


async def run(items: int, runs: int) -> Results:
    root = Path(tempfile.mkdtemp(prefix="bench-review-"))
    server = Server(root / "data", root / "server.log", _free_port())
    try:
        server.start()
        await server.wait_ready()
        seed_seconds = await seed_store(server.data_dir, items)
        token = server.token()
        async with httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT,
        ) as client:
            return await measure(client, server, items, runs, seed_seconds)
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)


async def measure(
    client: httpx.AsyncClient, server: Server, items: int, runs: int, seed_seconds: float
) -> Results:
    largest_id, largest = await largest_problem(client)
    cgm_id, largest_cgm = await largest_problem(client, "?vendor=CGM")
    filtered = "?vendor=dips%20as&rule_id=KOD-001"
    stats_queries = {
        "statistics": "",
        "statistics, rule KOD-001": "?rule_id=KOD-001",
        "statistics, level identifier": "?level=identifier",
        "statistics, largest problem": f"?problem={largest_id}",
        "statistics, vendor cgm + its largest problem": f"?vendor=cgm&problem={cgm_id}",
    }
    pages = [
        Timings(Case("reference: /healthz", REFERENCE, None)),
        Timings(Case("triage (problems)", "/review/problems", 1000.0)),
        Timings(Case("item list", "/review/items", 2000.0)),
        Timings(
            Case("item list, vendor dips as + rule KOD-001", "/review/items" + filtered, 2000.0)
        ),
        *(
            Timings(Case(name, "/review/stats" + query, 3000.0))
            for name, query in stats_queries.items()
        ),
    ]
    pages[1].matched = _int((await json_get(client, "/v1/review/problems"))["items"])
    pages[2].matched = await matched_by_list(client, "")
    pages[3].matched = await matched_by_list(client, filtered)
    for timings, query in zip(pages[4:], stats_queries.values(), strict=True):
        timings.matched = await matched_by_stats(client, query)
    for timings in pages:
        timings.first = await timed_get(client, timings.case.path)
    for _ in range(runs):
        for timings in pages:
            timings.runs.append(await timed_get(client, timings.case.path))

    export = Timings(Case("CSV export, whole filter", CSV_PATH, CSV_TARGET_MS), matched=items)
    memory_before = server.memory()
    export_rows = []
    export_bytes = 0
    for n in range(runs + 1):
        seconds, rows, export_bytes = await timed_export(client)
        if rows != items:
            raise RuntimeError(f"the export had {rows:,} data rows, not {items:,}")
        export_rows.append(rows)
        if n == 0:
            export.first = seconds
        else:
            export.runs.append(seconds)
    memory_after = server.memory()
    return Results(
        items=items,
        runs=runs,
        seed_seconds=seed_seconds,
        largest=largest,
        largest_cgm=largest_cgm,
        pages=pages,
        export=export,
        export_rows=export_rows,
        export_bytes=export_bytes,
        memory_before=memory_before,
        memory_after=memory_after,
    )


# --- the report --------------------------------------------------------------------------------


def _mib(kib: int) -> float:
    return kib / 1024


def _ratio(ratio: float) -> str:
    return f"{ratio:.1f}" if ratio < 10 else f"{ratio:,.0f}"


def report(results: Results) -> list[str]:
    reference = results.pages[0].median_ms
    rows = []
    for t in [*results.pages, results.export]:
        if t.case.target_ms is None:
            target, verdict = "", "reference"
        else:
            target = f"≤ {t.case.target_ms / 1000:.0f} s"
            verdict = "**OVER**" if t.over else "OK"
        matched = "" if t.matched is None else f"{t.matched:,}"
        rows.append(
            f"| {t.case.name} | `{t.case.path}` | {matched} | {t.first * 1000:.0f} "
            f"| {t.median_ms:.0f} | {t.max_ms:.0f} | {target} | {verdict} "
            f"| {_ratio(t.median_ms / reference)}× |"
        )
    before, after = results.memory_before, results.memory_after
    over = [t.case.name for t in [*results.pages, results.export] if t.over]
    mix = ", ".join(f"{p.rule_id} {p.vendor} {p.software_version} {p.share:.0%}" for p in PROBLEMS)
    return [
        "",
        f"### Review pages ({results.items:,} rejected items, one `intake serve` process, "
        f"SQLite store, httpx client on loopback)",
        "",
        f"- items: {results.items:,} rejected items in {len(PROBLEMS)} problems from 3 vendors "
        f"({mix}), spread over 30 days; seeded (receipts and index, `bench/review_data.py`) in "
        f"{results.seed_seconds:.1f} s ({results.items / results.seed_seconds:,.0f} items/s)",
        f"- largest problem: {results.largest}; largest of vendor CGM: {results.largest_cgm}",
        f"- requests: the reviewer's bearer token (intake:review); each request once first "
        f"(column first, cold), then {results.runs} rounds over every page in turn (median, max); "
        f"wall time of the request and its whole body as the client sees it; reference "
        f"`GET {REFERENCE}` in the same rounds (ratio: median over its median, "
        f"{reference:.1f} ms)",
        f"- CSV export: {results.runs + 1} exports after the pages, each streamed and counted: "
        f"{', '.join(f'{r:,}' for r in results.export_rows)} data rows "
        f"({results.export_bytes / 1e6:.1f} MB each, BOM and header checked)",
        f"- server memory around the exports: RSS {_mib(before.rss_kib):.0f} MiB before, "
        f"{_mib(after.rss_kib):.0f} MiB after; peak (VmHWM) {_mib(before.hwm_kib):.0f} MiB "
        f"before, {_mib(after.hwm_kib):.0f} MiB after "
        f"(+{_mib(after.hwm_kib - before.hwm_kib):.0f} MiB for "
        f"{results.runs + 1} × {results.export_bytes / 1e6:.1f} MB exported)",
        f"- whole benchmark {results.elapsed:.0f} s; "
        + (f"**over target: {', '.join(over)}**" if over else "every median within its target"),
        "",
        "| request | path | items in filter | first (ms) | median (ms) | max (ms) | target "
        "| | median/reference |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def record(lines: Sequence[str]) -> None:
    results = Path(__file__).with_name("RESULTS.md")
    with results.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_review", description=__doc__)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--items", type=int, default=ITEMS, help="rejected items to seed")
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs of each request")
    args = parser.parse_args(argv)
    if args.items < 1:
        parser.error("--items must be at least 1")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    started = time.perf_counter()
    results = asyncio.run(run(args.items, args.runs))
    results.elapsed = time.perf_counter() - started
    out = ["", "## Review benchmark", *header(), *report(results)]
    print("\n".join(out))
    if args.record:
        record(out)
    if any(t.over for t in [*results.pages, results.export]):
        sys.exit(1)


if __name__ == "__main__":
    main()
