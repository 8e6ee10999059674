"""Schemathesis over the whole OpenAPI document against a running `intake serve`: well over a
thousand generated requests, none answered with a 5xx."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Server, free_port

pytestmark = pytest.mark.slow

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.fixture
def fuzzed_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data", free_port(), tmp_path / "server.log")
    server.extra_env = {
        "INTAKE_RATE_LIMIT_PER_MINUTE": "1000000",  # measure robustness, not the limiter
        "INTAKE_FEED_MAX_WAIT_SECONDS": "0.2",  # long-polls would only slow the run down
    }
    yield server
    server.kill()


async def test_no_generated_request_gets_a_server_error(
    fuzzed_server: Server, tmp_path: Path
) -> None:
    await fuzzed_server.start()
    token = fuzzed_server.token("intake:report", "intake:state", "intake:admin", "intake:review")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{fuzzed_server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "60",
            "--seed",
            "20261123",
            "--request-timeout",
            "30",
            "--header",
            f"Authorization: Bearer {token}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    output = result.stdout + result.stderr
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None, output[-3000:]
    assert int(generated.group(1)) >= 1000, output[-3000:]
    assert result.returncode == 0, output[-5000:]
