"""The published JSON Schemas as AJV (tests/interop/ajv: draft 2020-12, strict mode, formats
asserted) reads them: every schema compiles in strict mode, and random mutations of every
valid example are judged alike by AJV and by the gateway's dry run — AJV refuses a message
exactly when the gateway finds a structure error in it — or the difference is one the schema's
description documents."""

from __future__ import annotations

import copy
import random
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.auth import DevIssuer
from schemas.catalogue import MessageModel, load_catalogue
from tests.conftest import running_app
from tests.interop.npm_peers import command, require_node
from wiring.settings import Settings

MUTATIONS_PER_MODEL = 800
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def ajv(schemas: dict[str, Any], cases: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    result = subprocess.run(
        command("ajv", "validate.mjs"),
        input=orjson.dumps({"schemas": schemas, "cases": cases}),
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    verdicts: list[dict[str, Any]] = orjson.loads(result.stdout)
    return verdicts


@pytest.fixture(scope="module")
def published() -> dict[str, Any]:
    return {m.key: m.json_schema for m in load_catalogue()}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = Settings(data_dir=tmp_path / "d", environment="test", rate_limit_per_minute=10**6)
    async with running_app(create_app(settings, registry=CollectorRegistry())) as c:
        yield c, settings


def test_every_published_schema_compiles_in_strict_mode(published: dict[str, Any]) -> None:
    require_node("AJV")
    model = next(iter(load_catalogue()))
    example = next(e for e in model.examples if e.valid)
    verdicts = ajv(published, [(key, example.message) for key in published])
    refused = {key: v["schema_error"] for key, v in zip(published, verdicts, strict=True)
               if "schema_error" in v}  # fmt: skip
    assert not refused


# --- mutations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    kind: str
    path: tuple[str | int, ...]
    message: Any


def _leaves(
    node: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))
    if path:
        yield path, node


def _set(message: Any, path: tuple[str | int, ...], value: Any) -> Any:
    out = copy.deepcopy(message)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return out


def _remove(message: Any, path: tuple[str | int, ...]) -> Any:
    out = copy.deepcopy(message)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return out


def _variants(value: Any) -> Iterator[tuple[str, Any]]:
    yield "number", 12345
    yield "text", "tekst"
    yield "boolean", True
    yield "null", None
    yield "array", []
    yield "object", {}
    yield "fraction", 1.5
    if isinstance(value, str):
        yield "longer", value + "9"
        yield "shorter", value[:-1]
        yield "empty", ""
        yield "final newline", value + "\n"
        yield "leading space", " " + value
        if any(c.isdigit() for c in value):
            yield "other digits", value.translate(ARABIC_INDIC)
        if len(value) > 10 and value[10:11] == "T":
            yield "leap second", value[:17] + "60" + value[19:]
            yield "no seconds", value[:16] + value[19:]
            yield "space for T", value[:10] + " " + value[11:]
            yield "hour 24", value[:11] + "24" + value[13:]
        if len(value) == 10 and value[4:5] == "-":
            yield "february 30", value[:5] + "02-30"
            yield "week date", value[:4] + "-W19-5"
        if value.isdigit():
            yield "as integer", int(value)
            yield "as integral float", float(int(value))
        yield "NUL", value + "\u0000"
    if isinstance(value, bool):
        yield "as number", 1
    elif isinstance(value, int):
        yield "integral float", float(value)
        yield "negative", -value - 1
        yield "huge", 2**63
        yield "beyond int32", 2**31
    elif isinstance(value, float):
        yield "integer", int(value)
        yield "negative", -value - 1


def mutations(model: MessageModel, rng: random.Random) -> list[Mutation]:
    out: list[Mutation] = []
    for example in model.examples:
        if not example.valid:
            continue
        message = example.message
        for path, value in _leaves(message):
            if isinstance(value, dict | list) and value:
                if isinstance(value, dict):
                    out.append(
                        Mutation("unknown field", path, _set(message, path, {**value, "ukjent": 1}))
                    )
                continue
            for kind, replacement in _variants(value):
                out.append(Mutation(kind, path, _set(message, path, replacement)))
            if isinstance(path[-1], str):
                out.append(Mutation("missing", path, _remove(message, path)))
    rng.shuffle(out)
    return out[:MUTATIONS_PER_MODEL]


# Differences the published schema documents in its description: (what decides the case, the
# phrase the description must hold).
Documented = Callable[[Mutation, dict[str, Any]], bool]
DOCUMENTED: list[tuple[str, Documented, str]] = [
    ("NUL", lambda m, _: m.kind == "NUL", "must not contain NUL"),
    ("leap second", lambda m, _: m.kind == "leap second", "no leap second 60"),
    (
        "no items",
        lambda m, answer: answer.get("code") == "no_items",
        "at least one item",
    ),
]


def _rule_ids(answer: dict[str, Any]) -> list[str]:
    return [f["rule_id"] for item in answer.get("items", []) for f in item.get("findings", [])]


def _gateway_structure_error(answer: dict[str, Any]) -> bool | None:
    """True/False: whether the dry run found a structure error; None when it refused the message
    for another reason (another unit, no items), which the schema cannot judge."""
    if answer.get("code") == "invalid_message":
        findings = answer.get("findings", [])
    elif "items" in answer:
        findings = [f for item in answer["items"] for f in item.get("findings", [])]
    else:
        return None
    return any(f["level"] == "structure" and f["severity"] == "error" for f in findings)


async def test_ajv_and_the_gateway_agree_on_mutated_examples(
    client: tuple[httpx.AsyncClient, Settings], published: dict[str, Any]
) -> None:
    require_node("AJV")
    http, settings = client
    issuer = DevIssuer.load_or_create(settings)
    rng = random.Random(20261202)
    cases: list[tuple[MessageModel, Mutation, dict[str, Any]]] = []
    for model in load_catalogue():
        unit = str(next(e for e in model.examples if e.valid).message[0][model.unit_field])
        token = issuer.mint(unit, scopes=["intake:report"])
        for mutation in mutations(model, rng):
            response = await http.post(
                f"/v1/messages/{model.message_type}/{model.version}",
                params={"dry_run": "true"},
                content=orjson.dumps(mutation.message),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            assert response.status_code < 500, response.text
            cases.append((model, mutation, response.json()))
    verdicts = ajv(published, [(m.key, mutation.message) for m, mutation, _ in cases])
    disagreements = []
    documented: dict[str, int] = {}
    for (model, mutation, answer), verdict in zip(cases, verdicts, strict=True):
        gateway = _gateway_structure_error(answer)
        if gateway is None and answer.get("code") != "no_items":
            continue  # refused for a reason outside the schema (e.g. the unit of the token)
        if gateway is not None and gateway == (not verdict["valid"]):
            continue
        reason = next((name for name, applies, _ in DOCUMENTED if applies(mutation, answer)), None)
        phrase = next((p for name, _, p in DOCUMENTED if name == reason), None)
        if (
            reason is not None
            and phrase is not None
            and phrase in published[model.key]["description"]
        ):
            documented[reason] = documented.get(reason, 0) + 1
            continue
        disagreements.append(
            f"{model.key} {mutation.kind} at /{'/'.join(map(str, mutation.path))}: "
            f"AJV {'accepts' if verdict['valid'] else 'refuses'} {verdict['errors'][:2]}, "
            f"gateway {'finds a structure error' if gateway else 'accepts'} "
            f"{answer.get('code') or _rule_ids(answer)[:3]}"
        )
    print(f"{len(cases)} mutated messages; documented differences: {documented}")
    assert len(cases) >= 1000
    assert not disagreements, f"{len(disagreements)} of {len(cases)}:\n" + "\n".join(
        disagreements[:40]
    )
