"""The conformance suite: peers the project did not write talk to the receiver. Every test here
carries the ``interop`` marker, counted in the run's summary line."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.interop)
