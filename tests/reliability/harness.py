"""What the reliability tests share: processes they start and kill, the service runners they stop
and resume, a client that retries like a well-behaved EPJ, and measurements taken from outside
the server (``/proc/<pid>/status``, ``/metrics``, the store itself)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.conftest import UNIT
from tests.integration.helpers import appointment

ROOT = Path(__file__).resolve().parents[2]
INTAKE = str(Path(sys.executable).parent / "intake")
POSTGRES_SH = ROOT / "deploy" / "postgres" / "postgres.sh"
URL = "/v1/messages/HST_Avtale/1"
FINAL = frozenset({"applied", "partially_applied", "rejected"})
PROBLEM_JSON = "application/problem+json"


def service_script(script: Path, command: str, run_dir: Path) -> str:
    """Run ``deploy/<service>/<service>.sh <command> <run-dir>``; its stdout (the address)."""
    done = subprocess.run(
        [str(script), command, str(run_dir)], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def rss_mib(pid: int) -> float:
    """The process's resident set (VmRSS) in MiB, read from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def metric(text_format: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text_format):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class Service:
    """An ``intake`` subcommand as its own process, with only the INTAKE_* settings given here
    (the test process's own are not passed on), logging to ``log``."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.args = [INTAKE, *args]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
        self.env.update(env)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        assert not self.alive
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    async def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        """Until ``url`` answers 200 (the process must stay alive meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                assert self.alive, f"{self.args[1]} died:\n{self.tail()}"
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert loop.time() < deadline, f"{url} not ready:\n{self.tail()}"
                await asyncio.sleep(0.1)

    async def wait(self, timeout: float = 120.0) -> int:
        """Wait for the process to end by itself; its exit code."""
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait, timeout)

    async def signal(self, sig: signal.Signals, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the process to end; its exit code."""
        assert self.process is not None
        self.process.send_signal(sig)
        if sig == signal.SIGKILL:
            self.kills += 1
        return await asyncio.to_thread(self.process.wait, timeout)

    def close(self) -> None:
        """Teardown: kill the process if it still runs, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


async def migrate_store(data_dir: Path, env: Mapping[str, str], services: list[Service]) -> None:
    """Run ``intake migrate`` for ``data_dir`` with ``env`` to completion (it joins ``services``,
    so teardown reaps it); fails with its log if it does not exit 0."""
    migrate = Service(
        ["migrate", "--data-dir", str(data_dir)], env, data_dir.parent / "migrate.log"
    )
    services.append(migrate)
    migrate.start()
    assert await migrate.wait() == 0, migrate.tail()


def token_for(data_dir: Path, *scopes: str, orgnr: str = UNIT) -> str:
    command = [INTAKE, "dev-token", "--orgnr", orgnr, "--data-dir", str(data_dir)]
    for scope in scopes or ("intake:report",):
        command += ["--scope", scope]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return done.stdout.strip()


def appointments(
    object_ids: Iterable[str], *, invalid: Iterable[str] = (), unit: str = UNIT
) -> list[dict[str, Any]]:
    """One HST_Avtale message with an appointment per object id; those in ``invalid`` carry an
    attendance status outside its code list, so validation rejects them (KOD-001)."""
    refused = set(invalid)
    message = appointment("", unit=unit)
    message[0]["avtale"] = [
        appointment(o, status=9 if o in refused else 1, journal=f"J-{o}", unit=unit)[0]["avtale"][0]
        for o in object_ids
    ]
    return message


@dataclass
class Outcomes:
    """What the load clients saw, for assertions and the report."""

    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    transport_errors: int = 0
    # idempotency key -> (receipt id, object ids of the items the receipt accepted)
    acknowledged: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    rejected_items: int = 0
    unexpected: list[str] = field(default_factory=list)

    @property
    def acknowledged_items(self) -> set[tuple[str, str]]:
        """(receipt id, object id) of every item a 202 accepted."""
        return {(rid, oid) for rid, oids in self.acknowledged.values() for oid in oids}

    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)


async def send_until_acknowledged(
    client: httpx.AsyncClient,
    url: str,
    body: Any,
    key: str,
    token: str,
    outcomes: Outcomes,
    *,
    deadline: float,
    max_wait: float = 5.0,
) -> dict[str, Any]:
    """Post ``body`` with ``key`` until it gets 202, as an EPJ does: on 503 it waits what
    Retry-After says (at most ``max_wait``), on a lost connection a moment; anything else is
    recorded as unexpected and ends the attempt."""
    loop = asyncio.get_running_loop()
    while True:
        assert loop.time() < deadline, f"{key} was never acknowledged: {outcomes.statuses}"
        try:
            response = await client.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            )
        except httpx.TransportError:
            outcomes.transport_errors += 1
            await asyncio.sleep(0.2)
            continue
        outcomes.statuses[response.status_code] += 1
        if response.status_code == 202:
            receipt: dict[str, Any] = response.json()
            accepted = [i["object_id"] for i in receipt["items"] if i["status"] != "rejected"]
            outcomes.rejected_items += len(receipt["items"]) - len(accepted)
            outcomes.acknowledged[key] = (receipt["receipt_id"], accepted)
            return receipt
        problem = _problem(response)
        outcomes.codes[str(problem.get("code"))] += 1
        if response.status_code != 503:
            outcomes.unexpected.append(f"{response.status_code} {response.text[:300]}")
            raise AssertionError(f"{key}: {response.status_code} {response.text[:500]}")
        retry_after = response.headers.get("retry-after", "")
        if not retry_after.isdigit() or int(retry_after) < 1:
            outcomes.unexpected.append(f"503 without Retry-After: {response.text[:300]}")
        await asyncio.sleep(min(float(retry_after or 1), max_wait))


def _problem(response: httpx.Response) -> dict[str, Any]:
    """The problem+json body; a non-problem error body is itself a finding."""
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith(PROBLEM_JSON), (response.status_code, content_type)
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code, body
    assert body["code"], body
    return body


async def wait_until_final(
    client: httpx.AsyncClient,
    base_url: str,
    receipt_ids: Iterable[str],
    token: str,
    *,
    timeout: float,
) -> Counter[str]:
    """Poll every receipt until its status is final; how many ended in which status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    final: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {token}"}
    for receipt_id in receipt_ids:
        while True:
            response = await client.get(f"{base_url}/v1/receipts/{receipt_id}", headers=headers)
            assert response.status_code == 200, response.text
            status = response.json()["status"]
            if status in FINAL:
                final[status] += 1
                break
            assert loop.time() < deadline, f"receipt {receipt_id} stayed {status}"
            await asyncio.sleep(0.1)
    return final


@dataclass(frozen=True)
class StoreCount:
    """What the state store holds for the acknowledged items."""

    found: int  # acknowledged items with at least one event
    lost: int  # acknowledged items with none
    duplicates: int  # events beyond the first for an item (must be 0)
    unexpected: int  # items in the store that were never acknowledged
    receipts: int
    receipts_not_validated: int


async def count_store(database_url: str, acknowledged: set[tuple[str, str]]) -> StoreCount:
    """Count, in the store itself, how often each acknowledged item (receipt id, object id)
    was applied."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            per_item = {
                (str(r[0]), str(r[1])): int(r[2])
                for r in await conn.execute(
                    text(
                        "SELECT receipt_id, object_id, count(*) FROM events"
                        " GROUP BY receipt_id, object_id"
                    )
                )
            }
            receipts, not_validated = (
                await conn.execute(
                    text(
                        "SELECT count(*), coalesce(sum(CASE WHEN stage <> 'validated'"
                        " THEN 1 ELSE 0 END), 0) FROM receipts"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return StoreCount(
        found=sum(1 for item in acknowledged if item in per_item),
        lost=sum(1 for item in acknowledged if item not in per_item),
        duplicates=sum(n - 1 for n in per_item.values()),
        unexpected=sum(1 for item in per_item if item not in acknowledged),
        receipts=int(receipts),
        receipts_not_validated=int(not_validated),
    )
