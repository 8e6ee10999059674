"""The lock files the bootstrap installs from (``make install``; ``make lock`` writes them): every
package pinned to one version with its hashes, every dependency of pyproject.toml in them, and
the image's runtime lock the same versions as development's."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements.lock", "requirements-runtime.lock", "requirements-bootstrap.lock")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _name(requirement: str) -> str:
    """A requirement's normalised project name (PEP 503)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _entries(lock: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every requirement in a lock file."""
    text = (ROOT / lock).read_text(encoding="utf-8")
    entries: dict[str, tuple[str, list[str]]] = {}
    # A requirement is its first line and the continuation lines after it (ending in "\").
    for block in re.split(r"\n(?=\S)", text):
        first = block.split("\n", 1)[0]
        if first.startswith("#") or not first.strip():
            continue
        pin = _PIN.match(first)
        assert pin, f"{lock}: not pinned to one version: {first}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
        entries[_name(pin.group(1))] = (pin.group(2), hashes)
    return entries


@pytest.mark.parametrize("lock", LOCKS)
def test_every_requirement_is_pinned_with_hashes(lock: str) -> None:
    entries = _entries(lock)
    assert entries
    unhashed = [name for name, (_, hashes) in entries.items() if not hashes]
    assert not unhashed, f"{lock}: no hashes for {unhashed}"


def test_every_dependency_of_the_project_is_locked() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    assert runtime | dev <= set(_entries("requirements.lock")), "run `make lock`"
    assert runtime <= set(_entries("requirements-runtime.lock")), "run `make lock`"


def test_the_runtime_lock_holds_developments_versions() -> None:
    dev = _entries("requirements.lock")
    runtime = _entries("requirements-runtime.lock")
    differ = {
        n: (v, dev.get(n, ("absent",))[0])
        for n, (v, _) in runtime.items()
        if dev.get(n, ("",))[0] != v
    }
    assert not differ, f"runtime vs development versions: {differ}"


def test_the_makefile_bootstraps_the_pinned_uv() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert version
    assert _entries("requirements-bootstrap.lock")["uv"][0] == version.group(1)
