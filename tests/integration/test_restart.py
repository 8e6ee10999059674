"""Stopping ``intake serve`` in the middle of a stream loses no accepted item and applies none
twice: a real server process is stopped (SIGTERM) or killed (SIGKILL) while a client sends, then
started again on the same data dir; the client retries what got no 202 with the same key."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.helpers import appointment
from tests.servers import Server, free_port

pytestmark = pytest.mark.slow

MESSAGES = 60
OBJECTS = 12


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", free_port(), tmp_path / "server.log")
    yield srv
    srv.kill()


async def _send_until_accepted(
    client: httpx.AsyncClient,
    server: Server,
    body: Any,
    key: str,
    token: str,
    failed_attempts: list[str],
) -> str:
    """What a well-behaved EPJ does: retry with the same key until it gets 202."""
    while True:
        try:
            response = await client.post(
                f"{server.url}/v1/messages/HST_Avtale/1",
                json=body,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            )
        except httpx.TransportError:
            failed_attempts.append(key)
            await asyncio.sleep(0.05)
            continue
        if response.status_code == 202:
            receipt_id: str = response.json()["receipt_id"]
            return receipt_id
        assert response.status_code == 503, response.text
        failed_attempts.append(key)
        await asyncio.sleep(0.05)


async def _stream_with_restarts(
    server: Server, kill_after: list[int], sig: signal.Signals
) -> tuple[list[str], dict[str, str]]:
    await server.start()
    token = server.token()
    receipts: list[str] = []
    expected: dict[str, str] = {}
    restarts: list[asyncio.Task[None]] = []
    failed_attempts: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(MESSAGES):
            if i in kill_after:
                # Stop the server while the next requests are already on their way.
                async def restart() -> None:
                    await asyncio.sleep(0.01)
                    await server.stop(sig)
                    await asyncio.sleep(0.2)
                    await server.start()

                restarts.append(asyncio.create_task(restart()))
            object_id = f"obj-{i % OBJECTS}"
            receipts.append(
                await _send_until_accepted(
                    client,
                    server,
                    appointment(object_id, journal=f"J-{i}"),
                    f"k-{i}",
                    token,
                    failed_attempts,
                )
            )
            expected[object_id] = f"J-{i}"
        await asyncio.gather(*restarts)
        assert len(restarts) == len(kill_after)
        # The stops really interrupted the stream: some requests failed and were retried.
        assert failed_attempts
        for receipt_id in receipts:
            for _ in range(400):
                response = await client.get(
                    f"{server.url}/v1/receipts/{receipt_id}",
                    headers={"Authorization": f"Bearer {token}"},
                )
                if response.json()["status"] == "applied":
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"receipt {receipt_id} never applied: {response.text}")
    await server.stop(signal.SIGTERM)
    return receipts, expected


def _check_store(data_dir: Path, expected: dict[str, str]) -> None:
    db = sqlite3.connect(data_dir / "state.sqlite3")
    try:
        events = db.execute("SELECT count(*), count(DISTINCT receipt_id) FROM events").fetchone()
        assert events == (MESSAGES, MESSAGES), "every accepted item exactly once in the history"
        rows = db.execute(
            "SELECT object_id, event_count, json_extract(state, '$.journalId') FROM objects"
        ).fetchall()
        assert {oid: journal for oid, _, journal in rows} == expected
        assert {oid: count for oid, count, _ in rows} == {
            f"obj-{k}": MESSAGES // OBJECTS for k in range(OBJECTS)
        }
        log = sqlite3.connect(data_dir / "eventlog.sqlite3")
        try:
            end = dict(
                log.execute(
                    "SELECT partition, next_offset FROM partitions WHERE topic = ?",
                    ("intake.accepted.HST_Avtale.v1",),
                ).fetchall()
            )
        finally:
            log.close()
        stored = dict(
            db.execute(
                "SELECT partition, next_offset FROM consumer_offsets WHERE consumer = 'projector'"
            ).fetchall()
        )
        assert {p: o for p, o in stored.items() if o} == {p: o for p, o in end.items() if o}
    finally:
        db.close()


async def test_graceful_stop_mid_stream_loses_nothing(server: Server) -> None:
    _, expected = await _stream_with_restarts(server, [20], signal.SIGTERM)
    _check_store(server.data_dir, expected)


async def test_killed_mid_stream_loses_nothing_and_applies_nothing_twice(server: Server) -> None:
    _, expected = await _stream_with_restarts(server, [15, 40], signal.SIGKILL)
    _check_store(server.data_dir, expected)


async def test_feed_across_restarts_loses_nothing(server: Server) -> None:
    await server.start()
    token = server.token()
    headers = {"Authorization": f"Bearer {token}"}
    sent: list[str] = []
    seen_applied: set[str] = set()
    cursor: str | None = None
    async with httpx.AsyncClient(timeout=10) as client:

        async def send(n: int) -> None:
            failed: list[str] = []
            sent.append(
                await _send_until_accepted(
                    client, server, appointment(f"feed-{n}"), f"feed-{n}", token, failed
                )
            )

        async def read_pages(pages: int) -> None:
            nonlocal cursor
            for _ in range(pages):
                params = {"limit": "4", "wait": "1"} | ({"after": cursor} if cursor else {})
                page = (
                    await client.get(f"{server.url}/v1/receipts", params=params, headers=headers)
                ).json()
                for change in page["changes"]:
                    if change["receipt"]["status"] == "applied":
                        seen_applied.add(change["receipt"]["receipt_id"])
                cursor = page["cursor"]  # what a client persists

        for n in range(8):
            await send(n)
        await read_pages(2)
        await server.stop(signal.SIGKILL)
        await server.start()
        for n in range(8, 12):
            await send(n)
        await read_pages(3)
        await server.stop(signal.SIGTERM)
        await server.start()
        await read_pages(12)
    await server.stop(signal.SIGTERM)
    assert seen_applied == set(sent)
