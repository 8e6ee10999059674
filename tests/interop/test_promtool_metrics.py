"""``/metrics`` as Prometheus's own linter reads it: ``promtool check metrics`` finds no fault
in the exposition of a gateway that has served reporting, SLASH and review traffic (``make test``
installs promtool through deploy/prometheus/prometheus.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.auth import DevIssuer
from tests.conftest import UNIT, running_app
from tests.integration.helpers import appointment
from wiring.settings import Settings


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is not None:
        return found
    if os.environ.get("INTAKE_REQUIRE_SERVICES") == "1":
        pytest.fail("promtool is required here (INTAKE_REQUIRE_SERVICES=1): make ops-check")
    pytest.skip("promtool not installed (deploy/prometheus/prometheus.sh install)")


async def test_promtool_finds_no_fault_in_the_exposition(tmp_path: Path) -> None:
    promtool = _promtool()
    settings = Settings(data_dir=tmp_path / "d", environment="test")
    token = DevIssuer.load_or_create(settings).mint(UNIT, scopes=["intake:report"])
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        auth = {"Authorization": f"Bearer {token}"}
        assert (
            await client.post("/v1/messages/HST_Avtale/1", json=appointment("M-1"), headers=auth)
        ).status_code == 202
        await client.get("/keys")
        await client.post("/message", content="x")
        await client.get("/v1/review/items", headers=auth)
        exposition = (await client.get("/metrics")).content
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert exposition.count(b"# TYPE ") > 20
    assert result.returncode == 0, (result.stdout + result.stderr).decode()[-3000:]
