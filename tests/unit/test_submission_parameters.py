"""The submission's query and header parameters, read by the endpoint itself (not by FastAPI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from receiver.app import create_app
from receiver.routes.messages import SubmissionParameters, submission_parameters
from wiring.settings import Settings


def request(query: str = "", headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "query_string": query.encode(), "headers": raw})


def test_defaults_when_nothing_is_given() -> None:
    assert submission_parameters(request()) == SubmissionParameters()


def test_values_from_query_and_headers() -> None:
    params = submission_parameters(
        request(
            "dry_run=true&atomic=1",
            {
                "Idempotency-Key": "k-1",
                "X-Vendor-Name": "DIPS",
                "X-Software-Name": "Arena",
                "X-Software-Version": "1.2",
                "X-Message-Sequence": "42",
            },
        )
    )
    assert params == SubmissionParameters(
        dry_run=True,
        atomic=True,
        idempotency_key="k-1",
        x_vendor_name="DIPS",
        x_software_name="Arena",
        x_software_version="1.2",
        x_message_sequence=42,
    )


@pytest.mark.parametrize(
    ("query", "headers", "loc"),
    [
        ("dry_run=maybe", {}, ["query", "dry_run"]),
        ("atomic=", {}, ["query", "atomic"]),
        ("", {"Idempotency-Key": "k" * 256}, ["header", "idempotency-key"]),
        ("", {"X-Vendor-Name": "v" * 201}, ["header", "x-vendor-name"]),
        ("", {"X-Software-Version": "1" * 101}, ["header", "x-software-version"]),
        ("", {"X-Message-Sequence": "zero"}, ["header", "x-message-sequence"]),
        ("", {"X-Message-Sequence": "0"}, ["header", "x-message-sequence"]),
        ("", {"X-Message-Sequence": str(10**15 + 1)}, ["header", "x-message-sequence"]),
    ],
)
def test_a_bad_parameter_is_named_where_it_came_from(
    query: str, headers: dict[str, str], loc: list[str]
) -> None:
    with pytest.raises(RequestValidationError) as raised:
        submission_parameters(request(query, headers))
    assert [list(e["loc"]) for e in raised.value.errors()] == [loc]


def test_the_parameters_are_in_the_openapi_description(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), registry=CollectorRegistry())
    operation = app.openapi()["paths"]["/v1/messages/{message_type}/{version}"]["post"]
    documented = {(p["in"], p["name"]) for p in operation["parameters"]}
    assert documented == {
        ("path", "message_type"),
        ("path", "version"),
        ("query", "dry_run"),
        ("query", "atomic"),
        ("header", "idempotency-key"),
        ("header", "x-vendor-name"),
        ("header", "x-software-name"),
        ("header", "x-software-version"),
        ("header", "x-message-sequence"),
    }
    sequence = next(p for p in operation["parameters"] if p["name"] == "x-message-sequence")
    assert {"type": "integer", "minimum": 1, "maximum": 10**15} in sequence["schema"]["anyOf"]
