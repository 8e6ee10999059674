"""Apache Avro's Java library (from Maven Central) reads every record of every topic after every
example of every model went through the receiver, resolving writer schemas only from what the
gateway publishes (``GET /v1/wire-schemas`` and the message schemas), all parsed together by one
``Schema.Parser``. The peer is tests/interop/avro_java (AvroRead.java, run.sh)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from eventlog.embedded import EmbeddedEventLog
from eventlog.port import ProduceRecord
from receiver.app import create_app
from receiver.auth import DevIssuer
from schemas.catalogue import load_catalogue
from tests.conftest import UNIT, running_app
from tests.integration.helpers import wait_for_status
from wiring.settings import Settings

RUN = Path(__file__).parent / "avro_java" / "run.sh"
GARBAGE = b"\xc3\x01garbage"


def _java_and_maven() -> None:
    missing = [tool for tool in ("java", "javac", "mvn") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("INTAKE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"the Avro Java peer needs {missing} (INTAKE_REQUIRE_SERVICES=1)")
        pytest.skip(f"the Avro Java peer needs {missing}")


async def _every_record(settings: Settings, topics: list[str]) -> list[tuple[str, bytes]]:
    log = EmbeddedEventLog(settings.embedded_log_path)
    await log.start()
    try:
        consumer = log.consumer("interop-avro-java", topics)
        await consumer.start()
        try:
            out: list[tuple[str, bytes]] = []
            while batch := await consumer.getmany(max_records=1000, timeout=0.2):
                out += [(r.topic, r.value) for r in batch]
            return out
        finally:
            await consumer.close()
    finally:
        await log.close()


async def test_apache_avro_java_decodes_every_record_from_published_schemas(
    tmp_path: Path,
) -> None:
    _java_and_maven()
    settings = Settings(data_dir=tmp_path / "d", environment="test", consumer_poll_seconds=0.05)
    token = DevIssuer.load_or_create(settings).mint(UNIT, scopes=["intake:report"])
    auth = {"Authorization": f"Bearer {token}"}
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        receipts = []
        for model in load_catalogue():
            for example in model.examples:
                response = await client.post(
                    f"/v1/messages/{model.message_type}/{model.version}",
                    json=example.message,
                    headers={**auth, "Idempotency-Key": f"{model.key}/{example.name}"},
                )
                if response.status_code == 202:
                    receipts.append(response.json()["receipt_id"])
        # A record no consumer can read becomes a poison record on the quarantine topic.
        runtime = client._transport.app.state.runtime  # type: ignore[attr-defined]
        await runtime.event_log.produce(
            [ProduceRecord(runtime.topics.accepted("HST_Avtale", 1), b"x", GARBAGE)]
        )
        for receipt_id in receipts:
            await wait_for_status(
                client, receipt_id, auth, {"applied", "partially_applied", "rejected"}
            )
        await asyncio.sleep(0.5)  # the quarantine indexer and receipt updates settle

        published = (await client.get("/v1/wire-schemas")).json()
        for entry in published:
            body = (await client.get(entry["href"])).content
            (schemas / f"wire-{entry['name']}.avsc").write_bytes(body)
        for model in (await client.get("/v1/message-types")).json():
            body = (await client.get(model["avro_schema_href"])).content
            (schemas / f"message-{model['message_type']}.v{model['version']}.avsc").write_bytes(
                body
            )

    topics = [runtime.topics.accepted(m.message_type, m.version) for m in load_catalogue()]
    topics += [runtime.topics.quarantine, runtime.topics.receipts]
    # Every record but the garbage put there on purpose (its poison record is on quarantine).
    records = [r for r in await _every_record(settings, topics) if r[1] != GARBAGE]
    lines = "".join(f"{topic}\t{value.hex()}\n" for topic, value in records)
    (tmp_path / "records.txt").write_text(lines, encoding="utf-8")
    result = subprocess.run(
        [str(RUN), str(schemas), str(tmp_path / "records.txt")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert output[-1] == f"total {len(records)} decoded {len(records)}"
    kinds = Counter(
        line.split()[2].rsplit(".", 1)[-1] for line in output if line.startswith("decoded")
    )
    assert kinds["Event"] > 0
    assert kinds["QuarantinedItem"] > 0
    assert kinds["PoisonRecord"] == 1
    assert kinds["ReceiptUpdate"] > 0
    assert {runtime.topics.quarantine, runtime.topics.receipts} <= {t for t, _ in records}
    assert len({e["fingerprint"] for e in published}) == len(published)
    assert orjson.loads((schemas / f"wire-{published[0]['name']}.avsc").read_bytes())["name"]
