"""Fixtures of the reliability tests, and their report: each test records its figures (load held,
faults injected, items acknowledged and found, duplicates, bad inputs and their outcomes) with the
``figures`` fixture; they are written to ``<pytest basetemp>/reliability-figures.json`` as each
test ends and printed in the terminal summary, from where docs/reliability.md takes them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_service
from tests.reliability.harness import POSTGRES_SH, Service, service_script

FIGURES = pytest.StashKey[dict[str, dict[str, Any]]]()
FIGURES_FILE = pytest.StashKey[Path]()


@pytest.fixture
def figures(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A dict the test fills with its figures; kept even when the test fails (with the outcome)."""
    recorded: dict[str, Any] = {}
    yield recorded
    if not recorded:
        return
    config = request.config
    everything = config.stash.setdefault(FIGURES, {})
    everything[request.node.nodeid] = recorded
    path = tmp_path_factory.getbasetemp() / "reliability-figures.json"
    config.stash[FIGURES_FILE] = path
    path.write_text(json.dumps(everything, indent=2, default=str) + "\n", encoding="utf-8")


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """Processes a test starts; every one still running is killed and reaped at teardown."""
    started: list[Service] = []
    yield started
    for service in started:
        service.close()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A PostgreSQL cluster of this test's own (URL, run dir), since the test stops it; stopped
    at teardown whatever happened."""
    require_service("INTAKE_TEST_POSTGRES_URL", "PostgreSQL")
    run_dir = tmp_path / "postgres"
    url = service_script(POSTGRES_SH, "start", run_dir)
    try:
        yield url, run_dir
    finally:
        subprocess.run([str(POSTGRES_SH), "stop", str(run_dir)], check=False, capture_output=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    everything = terminalreporter.config.stash.get(FIGURES, {})
    if not everything:
        return
    terminalreporter.write_sep("-", "reliability figures")
    for nodeid, recorded in everything.items():
        name = nodeid.rsplit("::", 1)[-1]
        terminalreporter.write_line(f"{name}: {json.dumps(recorded, default=str)}")
    path = terminalreporter.config.stash.get(FIGURES_FILE, None)
    if path is not None:
        terminalreporter.write_line(f"(also in {path})")
