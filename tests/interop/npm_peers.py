"""Peers from the npm registry (AJV, oidc-provider), run with Node.js by ``npm-peer.sh``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

NPM_PEER = Path(__file__).parent / "npm-peer.sh"


def require_node(peer: str) -> None:
    """Node.js and npm, or a skip (a failure in CI, where they must be there)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("INTAKE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"the {peer} peer needs {missing} (INTAKE_REQUIRE_SERVICES=1)")
        pytest.skip(f"the {peer} peer needs {missing}")


def command(peer: str, entry: str) -> list[str]:
    return [str(NPM_PEER), peer, entry]
