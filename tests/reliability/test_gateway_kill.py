"""``intake serve`` killed with SIGKILL in the middle of a large request, at different moments:
while the body is still arriving, and at points while the gateway validates, reserves the receipt,
produces the events and confirms (the kill times bisect towards the short window between
producing and confirming). After a restart the client's retry with the same Idempotency-Key
yields one receipt and applies every item once, wherever the kill landed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.reliability.harness import URL, Outcomes, appointments, send_until_acknowledged
from tests.servers import Server, free_port

pytestmark = pytest.mark.slow

ITEMS = 2500  # about 600 KiB: long enough to be killed in the middle of
INVALID_EVERY = 10  # every tenth item is rejected, so rejected items travel too
PROCESSING_KILLS = 6


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", free_port(), tmp_path / "server.log")
    srv.extra_env = {"INTAKE_CONSUMER_POLL_SECONDS": "0.1"}
    yield srv
    srv.kill()


def _message(trial: str) -> tuple[bytes, list[str]]:
    ids = [f"{trial}-{i}" for i in range(ITEMS)]
    invalid = ids[::INVALID_EVERY]
    return orjson.dumps(appointments(ids, invalid=invalid)), [i for i in ids if i not in invalid]


def _where_the_kill_landed(data_dir: Path, key: str) -> str:
    """What the killed gateway had stored of the message (read while it is down)."""
    store = sqlite3.connect(data_dir / "state.sqlite3")
    log = sqlite3.connect(data_dir / "eventlog.sqlite3")
    try:
        row = store.execute(
            "SELECT receipt_id, stage FROM receipts WHERE idempotency_key = ?", (key,)
        ).fetchone()
        if row is None:
            return "nothing stored"
        receipt_id, stage = row
        produced = log.execute(
            "SELECT count(*) FROM records WHERE instr(headers, ?) > 0",
            (receipt_id.encode().hex(),),
        ).fetchone()[0]
    finally:
        store.close()
        log.close()
    if stage == "validated":
        return "confirmed, answer lost"
    return "events in the log, receipt not confirmed" if produced else "receipt reserved only"


def _applied(data_dir: Path, key: str) -> tuple[int, int, int]:
    """(receipts with this key, events applied for its items, events beyond one per object)."""
    store = sqlite3.connect(data_dir / "state.sqlite3")
    try:
        receipts = store.execute(
            "SELECT count(*) FROM receipts WHERE idempotency_key = ?", (key,)
        ).fetchone()[0]
        per_object = store.execute(
            "SELECT count(*), count(DISTINCT object_id) FROM events WHERE object_id LIKE ?",
            (f"{key}-%",),
        ).fetchone()
    finally:
        store.close()
    return int(receipts), int(per_object[0]), int(per_object[0] - per_object[1])


async def _kill_while_uploading(server: Server, body: bytes, key: str, token: str) -> None:
    """Send the head and half the body over a raw socket, then kill the server."""
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {token}\r\nIdempotency-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[: len(body) // 2])
    await writer.drain()
    await asyncio.sleep(0.2)
    await server.stop(signal.SIGKILL)
    writer.close()
    with contextlib.suppress(ConnectionError):  # reset by the killed server
        await writer.wait_closed()


async def _kill_while_processing(
    client: httpx.AsyncClient, server: Server, body: bytes, key: str, token: str, delay: float
) -> None:
    """Send the whole body, and kill the server ``delay`` seconds after it was sent."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Idempotency-Key": key,
        "Content-Type": "application/json",
    }
    request = asyncio.create_task(client.post(f"{server.url}{URL}", content=body, headers=headers))
    await asyncio.sleep(delay)
    await server.stop(signal.SIGKILL)
    try:
        response = await request
    except httpx.TransportError:
        return
    assert response.status_code == 202, response.text  # done before the kill: the answer came


async def test_killed_gateway_and_a_retry_give_one_receipt_and_one_application(
    server: Server, figures: dict[str, Any]
) -> None:
    await server.start()
    token = server.token()
    outcomes = Outcomes()
    landed: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=60) as client:
        calibration, _ = _message("calibrate")
        started = loop.time()
        response = await client.post(
            f"{server.url}{URL}",
            content=calibration,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text
        seconds = loop.time() - started  # how long the gateway takes for such a message

        # Kill times bisect [0, 1.5 x that]: a kill before the log has the events moves the
        # next one later, a kill after the receipt was confirmed moves it earlier.
        early, late = 0.0, 1.5 * seconds
        trials = 1 + PROCESSING_KILLS
        for n in range(trials):
            key = f"kill-{n}"
            body, accepted = _message(key)
            if n == 0:
                await _kill_while_uploading(server, body, key, token)
                where = _where_the_kill_landed(server.data_dir, key)
            else:
                delay = (early + late) / 2
                await _kill_while_processing(client, server, body, key, token, delay)
                where = _where_the_kill_landed(server.data_dir, key)
                if where == "confirmed, answer lost":
                    late = delay
                elif where != "events in the log, receipt not confirmed":
                    early = delay
            landed[where] += 1
            await server.start()
            receipt = await send_until_acknowledged(
                client,
                f"{server.url}{URL}",
                orjson.loads(body),
                key,
                token,
                outcomes,
                deadline=loop.time() + 120,
            )
            assert sorted(outcomes.acknowledged[key][1]) == sorted(accepted)
            for _ in range(600):
                status = (
                    await client.get(
                        f"{server.url}/v1/receipts/{receipt['receipt_id']}",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                ).json()["status"]
                if status == "partially_applied":
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{key}: receipt stayed {status}")
            receipts, events, duplicates = _applied(server.data_dir, key)
            assert (receipts, events, duplicates) == (1, len(accepted), 0), key
    await server.stop(signal.SIGTERM)

    figures.update(
        load=f"{trials} messages of {ITEMS} items (~{len(calibration) // 1024} KiB), "
        f"{seconds:.2f} s each to accept",
        faults=f"intake serve SIGKILLed {trials} times mid-request",
        where_the_kills_landed=dict(landed),
        answers=dict(sorted(outcomes.statuses.items())),
        items_acknowledged=len(outcomes.acknowledged_items),
        receipts_per_key=1,
        duplicates=0,
    )
    assert outcomes.server_errors() == 0
    # The kills must have hit the message at more than one stage, or the test proves little.
    assert len(landed) >= 2, landed
