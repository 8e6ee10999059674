"""Validation core: our full validation (all levels) against the jsonschema library's Draft 2020-12
validator and the compiled fastjsonschema validator, both checking structure only against our
generated JSON Schema, on the same messages, on one core.

Target (DESIGN §12): ours ≥ 3× jsonschema; goal: as fast as fastjsonschema.

Also the events of those messages encoded by our generated Avro writer
(``schemas/avro_writer.py``) against fastavro's ``schemaless_writer``, the same bytes.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import orjson

from bench.machine import header
from schemas.catalogue import MessageModel, load_catalogue
from schemas.events import EventBuilder
from validators.codelists import CodeListRegistry, load_samples
from validators.engine import ModelValidator, ValidationContext

ITEMS_PER_MESSAGE = 500
ROUNDS = 3


def _message(model: MessageModel) -> Any:
    """A 500-item message from the model's examples: mostly valid items, some invalid ones."""
    valid = [e.message for e in model.examples if e.valid]
    invalid = [
        e.message for e in model.examples if not e.valid and not e.expected.get("message_rejected")
    ]
    block = copy.deepcopy(valid[0][0])
    item_arrays = [k for k, v in block.items() if isinstance(v, list)]
    pool = []
    for source in valid * 9 + invalid:  # about one in ten items has findings
        for blk in source:
            for name in item_arrays:
                pool += [(name, item) for item in blk.get(name, [])]
    for name in item_arrays:
        block[name] = []
    for i in range(ITEMS_PER_MESSAGE):
        name, item = pool[i % len(pool)]
        block[name].append(copy.deepcopy(item))
    return [block]


def _rate(run: Callable[[], None], items: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return items / best


def _context() -> ValidationContext:
    return ValidationContext(
        now=datetime.now(UTC), allow_synthetic=False, codelists=CodeListRegistry(load_samples())
    )


def main() -> list[str]:
    ctx = _context()
    lines = [
        "",
        "### Validation core (items/s, one core, best of 3)",
        "",
        "| model | ours (all levels) | jsonschema (structure) | fastjsonschema (structure) "
        "| ours/jsonschema | ours/fastjsonschema |",
        "|---|---|---|---|---|---|",
    ]
    totals = [0.0, 0.0, 0.0]
    for model in load_catalogue():
        message = _message(model)
        validator = ModelValidator(model)
        reference = jsonschema.Draft202012Validator(model.json_schema)
        draft7 = {**model.json_schema, "$schema": "http://json-schema.org/draft-07/schema#"}
        compiled = fastjsonschema.compile(draft7)

        # The gateway hands the validator the body the message was parsed from (it looks for
        # NUL characters only in a body that has an escaped one), so this does too.
        body = orjson.dumps(message)

        def ours(msg: Any = message, v: ModelValidator = validator, body: bytes = body) -> None:
            v.validate(copy.copy(msg), ctx, body=body)

        def with_jsonschema(msg: Any = message, r: Any = reference) -> None:
            for _ in r.iter_errors(msg):
                pass

        def with_fastjsonschema(msg: Any = message, c: Any = compiled) -> None:
            with contextlib.suppress(fastjsonschema.JsonSchemaException):  # stops at the first
                c(msg)

        rates = [_rate(f, ITEMS_PER_MESSAGE) for f in (ours, with_jsonschema, with_fastjsonschema)]
        for i, r in enumerate(rates):
            totals[i] += ITEMS_PER_MESSAGE / r
        lines.append(
            f"| {model.key} | {rates[0]:,.0f} | {rates[1]:,.0f} | {rates[2]:,.0f} | "
            f"{rates[0] / rates[1]:.2f}× | {rates[0] / rates[2]:.2f}× |"
        )
    n = ITEMS_PER_MESSAGE * len(list(load_catalogue()))
    overall = [n / t for t in totals]
    lines.append(
        f"| **all** | {overall[0]:,.0f} | {overall[1]:,.0f} | {overall[2]:,.0f} | "
        f"**{overall[0] / overall[1]:.2f}×** | **{overall[0] / overall[2]:.2f}×** |"
    )
    return lines


def avro() -> list[str]:
    """Events/s of the generated writer and of fastavro on the valid items' events."""
    ctx = _context()
    lines = [
        "",
        "### Avro encoding of the same messages' events (events/s, one core, best of 3)",
        "",
        "| model | ours (generated writer) | fastavro `schemaless_writer` | ours/fastavro |",
        "|---|---|---|---|",
    ]
    totals = [0.0, 0.0]
    count = 0
    for model in load_catalogue():
        result = ModelValidator(model).validate(_message(model), ctx)
        build = EventBuilder(
            model,
            unit="974152533",
            receipt_id="r-1",
            body_sha256="0" * 64,
            recorded_time=datetime.now(UTC),
        )
        data = [build(i).to_avro() for i in result.items if i.value is not None]
        codec = model.event_codec
        assert all(codec.encode(d) == codec.encode_with_fastavro(d) for d in data)

        def ours(data: list[Any] = data, codec: Any = codec) -> None:
            for datum in data:
                codec.encode(datum)

        def with_fastavro(data: list[Any] = data, codec: Any = codec) -> None:
            for datum in data:
                codec.encode_with_fastavro(datum)

        rates = [_rate(f, len(data)) for f in (ours, with_fastavro)]
        totals = [t + len(data) / r for t, r in zip(totals, rates, strict=True)]
        count += len(data)
        lines.append(
            f"| {model.key} | {rates[0]:,.0f} | {rates[1]:,.0f} | {rates[0] / rates[1]:.2f}× |"
        )
    overall = [count / t for t in totals]
    lines.append(
        f"| **all** | {overall[0]:,.0f} | {overall[1]:,.0f} | **{overall[0] / overall[1]:.2f}×** |"
    )
    return lines


if __name__ == "__main__":
    out = ["", "## Validation benchmark", *header(), *main(), *avro()]
    print("\n".join(out))
    if "--record" in sys.argv:
        results = Path(__file__).with_name("RESULTS.md")
        if not results.exists():
            results.write_text(
                "# Benchmark results\n\nAppended by `make bench`.\n", encoding="utf-8"
            )
        with results.open("a", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")
