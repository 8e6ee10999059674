"""What operators rely on: every catalogued metric is exposed (and documented), labels never carry
a unit or a person, and a real Prometheus scrapes a running gateway with our alert rules loaded."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import UNIT, require_service
from tests.integration.helpers import example_message, wait_for_status
from tests.servers import free_port
from wiring.metrics import CATALOGUE, MetricSpec

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "intake.json"
INTAKE = str(Path(sys.executable).parent / "intake")
SUBMIT = "/v1/messages/HST_Avtale/1"
IPLOS = "/v1/messages/IPLOS_Tjenestehendelse/1"

# Label names that would carry a unit, a person or one message: never allowed.
FORBIDDEN_LABELS = {
    "unit",
    "orgnr",
    "unit_orgnr",
    "person",
    "person_id",
    "fodselsnr",
    "receipt_id",
    "event_id",
    "object_id",
    "idempotency_key",
    "correlation_id",
    "url",
    "path",
}


def _exposed_name(spec: MetricSpec) -> str:
    """The sample that always exists once the metric has a child."""
    return f"{spec.name}_count" if spec.type == "histogram" else spec.name


def _sample_names(spec: MetricSpec) -> set[str]:
    if spec.type == "histogram":
        return {f"{spec.name}{suffix}" for suffix in ("_bucket", "_count", "_sum", "_created")}
    if spec.type == "counter":
        return {spec.name, f"{spec.name.removesuffix('_total')}_created"}
    return {spec.name}


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> its label sets and values."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def _values(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> list[float]:
    return [v for have, v in samples.get(name, []) if labels.items() <= have.items()]


def _identities(message: Any) -> set[str]:
    """The person and object identifiers in a message, wherever they are."""
    found: set[str] = set()
    if isinstance(message, dict):
        for key, value in message.items():
            if key in ("personId", "fodselsNr", "avtaleId") and isinstance(value, str):
                found.add(value)
            found |= _identities(value)
    elif isinstance(message, list):
        for value in message:
            found |= _identities(value)
    return found


def _iplos_end_without_start() -> list[dict[str, Any]]:
    """A service that ends without having started: the projector's integrity finding INT-001."""
    message = example_message("valid/tjenesteforlop.json", "IPLOS_Tjenestehendelse/1")
    block = message[0]
    for key, value in list(block.items()):
        if isinstance(value, list):
            block[key] = [value[-1]] if key == "tjenesteSlutt" else []
    return message


# --- the catalogue ------------------------------------------------------------------------


def test_catalogue_names_follow_the_conventions_and_labels_are_bounded() -> None:
    names = [spec.name for spec in CATALOGUE]
    assert len(names) == len(set(names))
    for spec in CATALOGUE:
        assert re.fullmatch(r"intake_[a-z0-9_]+", spec.name), spec.name
        assert spec.help.strip(), spec.name
        if spec.type == "counter":
            assert spec.name.endswith("_total"), spec.name
        if spec.type == "histogram":
            assert spec.name.endswith("_seconds"), spec.name
        assert not set(spec.labels) & FORBIDDEN_LABELS, spec.name
        assert "le" not in spec.labels


def test_docs_describe_every_catalogued_metric() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(intake_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|([^|]+)\|", text, re.M)
    documented = {
        name: (kind, tuple(re.findall(r"`([a-z_]+)`", labels)), help_text.strip())
        for name, kind, labels, help_text in rows
    }
    assert documented == {spec.name: (spec.type, spec.labels, spec.help) for spec in CATALOGUE}


async def test_every_catalogued_metric_is_exposed_after_a_small_workload(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    valid = (await client.post(SUBMIT, json=example_message(), headers=auth)).json()
    await wait_for_status(client, valid["receipt_id"], auth, {"applied"})
    invalid = (
        await client.post(SUBMIT, json=example_message("invalid/item_errors.json"), headers=auth)
    ).json()
    await wait_for_status(client, invalid["receipt_id"], auth, {"partially_applied"})
    iplos = (await client.post(IPLOS, json=_iplos_end_without_start(), headers=auth)).json()
    await wait_for_status(client, iplos["receipt_id"], auth, {"applied"})
    assert (await client.get("/readyz")).status_code == 200

    # The projector reports lag and the quarantine's size every few seconds.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        response = await client.get("/metrics")
        assert response.status_code == 200
        text = response.text
        samples = _samples(text)
        quarantined = _values(samples, "intake_quarantine_records")
        if (quarantined and quarantined[0] >= 2) or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)

    missing = [spec.name for spec in CATALOGUE if _exposed_name(spec) not in samples]
    assert missing == [], f"catalogued but not exposed after the workload: {missing}"
    for spec in CATALOGUE:
        for labels, _ in samples[_exposed_name(spec)]:
            assert set(labels) == set(spec.labels), (spec.name, labels)
    catalogued = set().union(*(_sample_names(spec) for spec in CATALOGUE))
    assert {name for name in samples if name.startswith("intake_")} <= catalogued

    # What the workload did shows in the numbers.
    hst = {"message_type": "HST_Avtale", "version": "1"}
    assert _values(samples, "intake_items_total", **hst, outcome="accepted") == [4.0]
    assert _values(samples, "intake_items_total", **hst, outcome="rejected") == [2.0]
    assert _values(samples, "intake_findings_total", rule_id="STR-007", severity="error")
    assert _values(samples, "intake_receipts_total", **hst, status="accepted") == [1.0]
    assert _values(samples, "intake_receipts_total", **hst, status="partially_accepted") == [1.0]
    assert _values(samples, "intake_integrity_findings_total", rule_id="INT-001") == [1.0]
    assert _values(samples, "intake_ready", check="store") == [1.0]
    assert _values(samples, "intake_consumer_healthy", consumer="projector") == [1.0]
    assert quarantined == [2.0], "the 2 rejected items are in quarantine"
    assert _values(samples, "intake_codelist_version_info", sample="true")

    # No unit, person, receipt or object id anywhere in the output.
    identities = _identities(example_message()) | _identities(_iplos_end_without_start())
    for secret in {UNIT, valid["receipt_id"], invalid["receipt_id"], *identities}:
        assert secret not in text, secret


# --- a real Prometheus ----------------------------------------------------------------------


async def _wait_until(
    http: httpx.AsyncClient, url: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise AssertionError(f"{url}: process exited:\n{log.read_text()[-3000:]}")
        try:
            if (await http.get(url)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered 200:\n{log.read_text()[-3000:]}")


@asynccontextmanager
async def _process(
    argv: list[str], log: Path, ready_url: str, http: httpx.AsyncClient
) -> AsyncIterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        await _wait_until(http, ready_url, process, log)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 20)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)


def _scrape_config(gateway_port: int) -> dict[str, Any]:
    """Our deploy config, with the gateway job pointed at one gateway on loopback."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    [gateway_job] = [j for j in config["scrape_configs"] if j["job_name"] == "intake-gateway"]
    gateway_job.pop("dns_sd_configs")
    gateway_job["static_configs"] = [{"targets": [f"127.0.0.1:{gateway_port}"]}]
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    config["scrape_configs"] = [gateway_job]
    return config


async def _query(http: httpx.AsyncClient, base: str, promql: str) -> list[dict[str, Any]]:
    response = await http.get(f"{base}/api/v1/query", params={"query": promql})
    body = response.json()
    assert body["status"] == "success", (promql, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.slow
async def test_prometheus_scrapes_a_running_gateway_and_evaluates_our_rules(
    tmp_path: Path,
) -> None:
    prometheus = require_service("INTAKE_TEST_PROMETHEUS", "Prometheus")
    data_dir = tmp_path / "data"
    gateway_port, prometheus_port = free_port(), free_port()
    gateway = f"http://127.0.0.1:{gateway_port}"
    base = f"http://127.0.0.1:{prometheus_port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(_scrape_config(gateway_port)))

    async with httpx.AsyncClient(timeout=10) as http:
        serve = [INTAKE, "serve", "--port", str(gateway_port), "--data-dir", str(data_dir)]
        async with _process(serve, tmp_path / "intake.log", f"{gateway}/readyz", http):
            token = subprocess.run(
                [INTAKE, "dev-token", "--orgnr", UNIT, "--data-dir", str(data_dir)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            auth = {"Authorization": f"Bearer {token}"}
            receipt = (
                await http.post(f"{gateway}{SUBMIT}", json=example_message(), headers=auth)
            ).json()
            assert receipt["status"] == "accepted"

            command = [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--log.level=warn",
            ]
            log = tmp_path / "prometheus.log"
            async with _process(command, log, f"{base}/-/ready", http):
                accepted = 'sum(intake_items_total{job="intake-gateway", outcome="accepted"})'
                result: list[dict[str, Any]] = []
                for _ in range(300):
                    result = await _query(http, base, accepted)
                    if result:
                        break
                    await asyncio.sleep(0.1)
                assert result, f"no sample of {accepted}:\n{log.read_text()[-3000:]}"
                assert result[0]["value"][1] == "3"
                [up] = await _query(http, base, 'up{job="intake-gateway"}')
                assert up["value"][1] == "1"

                # Every rule of alerts.yml loads and evaluates on real data without error.
                rule_file = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
                expected = {group["name"] for group in rule_file["groups"]}
                groups: list[dict[str, Any]] = []
                for _ in range(100):
                    groups = (await http.get(f"{base}/api/v1/rules")).json()["data"]["groups"]
                    rules = [rule for group in groups for rule in group["rules"]]
                    if rules and all(rule["health"] == "ok" for rule in rules):
                        break
                    await asyncio.sleep(0.1)
                assert {g["name"] for g in groups} == expected
                bad = [
                    (r["name"], r.get("lastError"))
                    for g in groups
                    for r in g["rules"]
                    if r["health"] != "ok"
                ]
                assert bad == []

                # Every query of the Grafana dashboard parses and runs.
                for expr in _dashboard_queries():
                    await _query(http, base, expr.replace("$__rate_interval", "1m"))


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
