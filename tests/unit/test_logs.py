"""JSON log lines name the request they were written for (correlation id, receipt id, unit) and
nothing personal, and one request's fields never reach another's lines."""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from receiver.app import create_app
from receiver.auth import DevIssuer
from receiver.deps import Reporter
from tests.conftest import OTHER_UNIT, UNIT
from tests.integration.helpers import appointment, example_message
from wiring.logs import JsonFormatter, bind_log_fields, log_fields
from wiring.settings import Settings

Lines = Callable[[], list[dict[str, Any]]]
SUBMIT = "/v1/messages/HST_Avtale/1"
# Fødselsnummer, D-number and other 11-digit person identifiers.
PERSON_ID = re.compile(r"(?<!\d)\d{11}(?!\d)")


@pytest.fixture
def lines() -> Iterator[Lines]:
    """Every line logged during the test, parsed, as the production formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _submitted(lines: Lines, correlation_id: str) -> dict[str, Any]:
    [line] = [
        line
        for line in lines()
        if line["logger"] == "receiver.submission" and line.get("correlation_id") == correlation_id
    ]
    return line


async def _submit(
    client: httpx.AsyncClient, token: str, message: Any, correlation_id: str
) -> dict[str, Any]:
    response = await client.post(
        SUBMIT,
        json=message,
        headers={"Authorization": f"Bearer {token}", "x-correlation-id": correlation_id},
    )
    assert response.status_code == 202, response.text
    receipt: dict[str, Any] = response.json()
    return receipt


def test_fields_are_written_only_when_bound() -> None:
    record = logging.LogRecord("intake.test", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    formatter = JsonFormatter()
    assert set(orjson.loads(formatter.format(record))) == {"time", "level", "logger", "message"}

    def bound() -> dict[str, Any]:
        bind_log_fields(unit=UNIT, receipt_id="r-1")
        line: dict[str, Any] = orjson.loads(formatter.format(record))
        return line

    line = contextvars.copy_context().run(bound)
    assert line["unit"] == UNIT
    assert line["receipt_id"] == "r-1"
    assert line["message"] == "hello x"
    assert log_fields() == {}  # bound in the copy only


async def test_a_submission_logs_its_correlation_id_receipt_and_unit_and_no_person(
    client: httpx.AsyncClient, token: str, lines: Lines
) -> None:
    receipt = await _submit(client, token, example_message(), "corr-submit-1")
    line = _submitted(lines, "corr-submit-1")
    assert line["unit"] == UNIT
    assert line["receipt_id"] == receipt["receipt_id"]
    assert line["level"] == "info"
    assert "HST_Avtale/1" in line["message"]
    # The example holds a fødselsnummer and a D-number; neither reaches any line.
    assert not PERSON_ID.search(orjson.dumps(lines()).decode())


async def test_fields_do_not_leak_between_requests(
    client: httpx.AsyncClient, token: str, issuer: DevIssuer, lines: Lines
) -> None:
    first = await _submit(client, token, example_message(), "corr-first")
    # In-process, the app runs in this test's task: the request's fields are gone afterwards.
    assert log_fields() == {}
    logging.getLogger("tests.after").info("between requests")
    [between] = [line for line in lines() if line["logger"] == "tests.after"]
    assert not {"correlation_id", "receipt_id", "unit"} & set(between)

    other_token = issuer.mint(OTHER_UNIT, scopes=["intake:report"])
    second = await _submit(
        client, other_token, appointment("AVT-LOG-1", unit=OTHER_UNIT), "corr-second"
    )
    line = _submitted(lines, "corr-second")
    assert line["unit"] == OTHER_UNIT
    assert line["receipt_id"] == second["receipt_id"] != first["receipt_id"]
    assert _submitted(lines, "corr-first")["receipt_id"] == first["receipt_id"]


async def test_concurrent_requests_keep_their_own_fields(
    client: httpx.AsyncClient, token: str, issuer: DevIssuer, lines: Lines
) -> None:
    other_token = issuer.mint(OTHER_UNIT, scopes=["intake:report"])
    sends = [
        (token, UNIT, f"corr-{UNIT}-{i}", appointment(f"AVT-C-{i}", unit=UNIT)) for i in range(4)
    ] + [
        (
            other_token,
            OTHER_UNIT,
            f"corr-{OTHER_UNIT}-{i}",
            appointment(f"AVT-C-{i}", unit=OTHER_UNIT),
        )
        for i in range(4)
    ]
    receipts = await asyncio.gather(
        *(_submit(client, tok, message, corr) for tok, _, corr, message in sends)
    )
    for (_, unit, corr, _), receipt in zip(sends, receipts, strict=True):
        line = _submitted(lines, corr)
        assert line["unit"] == unit
        assert line["receipt_id"] == receipt["receipt_id"]


@pytest.fixture
async def failing_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with two routes that fail unexpectedly, one behind the reporter's token."""
    app: FastAPI = create_app(settings, run_consumers=False)

    async def fail_for_unit(principal: Reporter) -> None:
        raise RuntimeError("a bug")

    async def fail() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test/fail-for-unit", fail_for_unit)
    app.add_api_route("/test/fail", fail)
    async with app.router.lifespan_context(app):
        # The 500 is sent before the error propagates; keep it from reaching the test.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as c:
            yield c


async def test_an_unexpected_error_is_logged_with_its_request_s_fields(
    failing_client: httpx.AsyncClient, auth: dict[str, str], lines: Lines
) -> None:
    response = await failing_client.get(
        "/test/fail-for-unit", headers={**auth, "x-correlation-id": "corr-bug-1"}
    )
    assert response.status_code == 500
    [error] = [line for line in lines() if line["logger"] == "receiver.problems"]
    assert error["level"] == "error"
    assert error["correlation_id"] == "corr-bug-1"
    assert error["unit"] == UNIT  # bound where the token was verified
    assert "RuntimeError" in error["exception"]

    # The next request starts from its own fields only.
    response = await failing_client.get("/test/fail", headers={"x-correlation-id": "corr-bug-2"})
    assert response.status_code == 500
    [error] = [
        line
        for line in lines()
        if line["logger"] == "receiver.problems" and line.get("correlation_id") == "corr-bug-2"
    ]
    assert "unit" not in error
