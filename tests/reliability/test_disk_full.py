"""Embedded mode with its data dir on a small tmpfs that fills up mid-run: while the disk is full
the gateway answers 503 problem+json with Retry-After (never 500, never a 202 for something it did
not store) and the projector waits; once space returns, the SQLite files pass ``PRAGMA
integrity_check`` and the clients' retries are applied exactly once. Then the same data dir is
remounted read-only: the server refuses to start, saying why, and starts again once writable."""

from __future__ import annotations

import asyncio
import errno
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.harness import (
    PROBLEM_JSON,
    URL,
    Outcomes,
    appointments,
    count_store,
    send_until_acknowledged,
    wait_until_final,
)
from tests.servers import Server, free_port

pytestmark = pytest.mark.slow

TMPFS_MIB = 48
ITEMS = 300  # per message: big enough that a full disk cannot hide in SQLite's free pages
BEFORE, WHILE_FULL = 4, 30


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of TMPFS_MIB MiB of this test's own; unmounted at teardown."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", f"size={TMPFS_MIB}m,mode=0755", "tmpfs", str(mount_point))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def server(small_disk: Path, tmp_path: Path) -> Iterator[Server]:
    srv = Server(small_disk / "data", free_port(), tmp_path / "server.log")
    srv.extra_env = {
        "INTAKE_CONSUMER_POLL_SECONDS": "0.1",
        "INTAKE_RATE_LIMIT_PER_MINUTE": "100000",
    }
    yield srv
    srv.kill()  # before the tmpfs is unmounted


def _fill(path: Path) -> int:
    """Write ``path`` until the file system is full; the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as filler:
        for size in (len(chunk), 65536, 4096, 512):  # then the last crumbs
            try:
                while True:
                    written += filler.write(chunk[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return written


def _integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def _message(n: int) -> tuple[list[dict[str, Any]], str]:
    ids = [f"full-{n}-{i}" for i in range(ITEMS)]
    return appointments(ids, invalid=ids[::10]), f"full-{n}"


async def test_full_disk_gives_503_and_no_corruption(
    server: Server, small_disk: Path, figures: dict[str, Any]
) -> None:
    await server.start()
    token = server.token()
    auth = {"Authorization": f"Bearer {token}"}
    outcomes = Outcomes()
    refused: list[int] = []
    while_full: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=60) as client:
        url = f"{server.url}{URL}"
        for n in range(BEFORE):
            body, key = _message(n)
            await send_until_acknowledged(
                client, url, body, key, token, outcomes, deadline=loop.time() + 60
            )

        filled = await asyncio.to_thread(_fill, small_disk / "filler")
        for n in range(BEFORE, BEFORE + WHILE_FULL):
            body, key = _message(n)
            response = await client.post(url, json=body, headers={**auth, "Idempotency-Key": key})
            if response.status_code == 202:
                while_full["202"] += 1
                receipt = response.json()
                outcomes.acknowledged[key] = (
                    receipt["receipt_id"],
                    [i["object_id"] for i in receipt["items"] if i["status"] != "rejected"],
                )
                continue
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith(PROBLEM_JSON)
            assert int(response.headers["retry-after"]) >= 1
            code = response.json()["code"]
            assert code in {"storage_full", "log_unavailable", "store_unavailable"}, code
            while_full[f"503 {code}"] += 1
            refused.append(n)
        for path in ("/readyz", "/healthz", "/v1/completeness", "/metrics"):
            answer = await client.get(f"{server.url}{path}", headers=auth)
            assert answer.status_code < 500 or answer.status_code == 503, (path, answer.text)
        assert refused, f"nothing was refused with {filled} bytes of filler: {while_full}"

        (small_disk / "filler").unlink()
        for n in refused:
            body, key = _message(n)
            await send_until_acknowledged(
                client, url, body, key, token, outcomes, deadline=loop.time() + 120
            )
        final = await wait_until_final(
            client,
            server.url,
            [receipt_id for receipt_id, _ in outcomes.acknowledged.values()],
            token,
            timeout=120,
        )
    await server.stop(signal.SIGTERM)
    assert "unexpected" not in server.log_path.read_text(), "the server logged a bug (a 500)"

    data_dir = server.data_dir
    integrity = {
        name: _integrity(data_dir / name) for name in ("state.sqlite3", "eventlog.sqlite3")
    }
    store = await count_store(
        f"sqlite+aiosqlite:///{data_dir / 'state.sqlite3'}", outcomes.acknowledged_items
    )
    read_only = await _start_read_only(server, small_disk)
    figures.update(
        load=f"{BEFORE + WHILE_FULL} messages of {ITEMS} items ({ITEMS // 10} invalid each)",
        faults=f"{TMPFS_MIB} MiB tmpfs filled ({filled // 1024} KiB of filler) during "
        f"{WHILE_FULL} messages; then the data dir remounted read-only",
        answers_while_full=dict(while_full),
        items_acknowledged=len(outcomes.acknowledged_items),
        items_found=store.found,
        duplicates=store.duplicates,
        receipts_final=dict(final),
        integrity_check=integrity,
        read_only_start=read_only,
    )
    assert integrity == {"state.sqlite3": "ok", "eventlog.sqlite3": "ok"}
    assert set(final) == {"partially_applied"}, final
    assert store.lost == 0
    assert store.duplicates == 0
    assert store.unexpected == 0


async def _start_read_only(server: Server, disk: Path) -> str:
    """Remount the data dir read-only and start the server on it: it must not come up as if it
    could store (exit, or stay unready); then writable again, it starts and serves."""
    remounted = _mount("-o", "remount,ro", str(disk))
    assert remounted.returncode == 0, remounted.stderr
    try:
        with pytest.raises(AssertionError, match=r"server died|never became ready") as refused:
            await server.start()
        server.kill()
        said = str(refused.value).lower()
        assert "is not writable (a read-only file system" in said, said[-2000:]
    finally:
        _mount("-o", "remount,rw", str(disk))
    await server.start()
    await server.stop(signal.SIGTERM)
    return "refused to start, naming the read-only file system; started once writable"
