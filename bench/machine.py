"""What every benchmark prints first: the machine, the versions, and a calibration line, so runs on
different machines can be compared (DESIGN §12)."""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime
from importlib import metadata

import orjson


def meminfo_kib(name: str) -> int:
    """A field of ``/proc/meminfo`` (``MemTotal``, ``Dirty``, ...) in KiB; 0 if it is not there."""
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    return 0


def _memory_gib() -> float:
    return meminfo_kib("MemTotal") / 1024 / 1024


def calibration() -> dict[str, float]:
    """A fixed pure-Python loop and an orjson parse rate, measured now."""
    started = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i % 7
    loop_seconds = time.perf_counter() - started
    document = orjson.dumps(
        [{"id": i, "name": f"item-{i}", "values": list(range(10))} for i in range(1000)]
    )
    started = time.perf_counter()
    rounds = 200
    for _ in range(rounds):
        orjson.loads(document)
    parse_seconds = time.perf_counter() - started
    return {
        "python_loop_ms": loop_seconds * 1000,
        "orjson_mb_per_s": len(document) * rounds / parse_seconds / 1e6,
    }


def header() -> list[str]:
    cal = calibration()
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in (
            "fastavro",
            "orjson",
            "jsonschema",
            "fastjsonschema",
            "aiokafka",
            "asyncpg",
            "SQLAlchemy",
            "uvicorn",
            "fastapi",
            "httpx",
            "aiohttp",
        )
    )
    return [
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- machine: {os.cpu_count()} cores, {_memory_gib():.1f} GiB, {platform.machine()}, "
        f"Python {platform.python_version()}",
        f"- versions: {versions}",
        f"- calibration: pure-Python loop {cal['python_loop_ms']:.0f} ms, "
        f"orjson parse {cal['orjson_mb_per_s']:.0f} MB/s",
    ]
