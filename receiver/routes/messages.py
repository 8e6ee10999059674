"""``POST /v1/messages/{message_type}/{version}`` — the reporting endpoint."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time
from email.utils import format_datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from receiver.deps import Reporter, RuntimeDep, SubmissionsDep, published_model
from receiver.problems import Problem
from receiver.responses import OrjsonResponse
from receiver.submission import SubmissionMeta
from schemas.catalogue import MessageModel

router = APIRouter(prefix="/v1", tags=["reporting"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The message as the published model defines it "
        "(GET /v1/message-types/{message_type}/{version}).",
        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
    }
}


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (never buffered past it),
    and with 408 when it has not all arrived within ``timeout`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(
            408,
            "body_timeout",
            "The body arrived too slowly",
            f"The whole body must arrive within {timeout:g} seconds; nothing was stored.",
            headers={"Connection": "close"},
        ) from None
    return b"".join(chunks)


def _too_large(limit: int) -> Problem:
    return Problem(
        413, "payload_too_large", "The body is too large", f"At most {limit} bytes per message."
    )


def parse_json(request: Request, body: bytes) -> Any:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Problem(
            415, "unsupported_media_type", "Send JSON", "Content-Type must be application/json."
        )
    if not body.strip():
        raise Problem(400, "malformed_json", "The body is not valid JSON", "The body is empty.")
    try:
        # Parsed once, and every later step sees this parse: a duplicate member name keeps its
        # last value (orjson; RFC 8259 §4 leaves it to the parser), see docs/reliability.md.
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "malformed_json", "The body is not valid JSON", str(exc)) from exc


class SubmissionParameters(BaseModel):
    """The query and header parameters of a submission.

    Read by :func:`submission_parameters`, not declared one by one in the endpoint's signature:
    FastAPI's per-request work for seven declared parameters was a fifth of a one-item dry
    run's CPU in the app by profile; reading them here takes 14 % off it (bench/RESULTS.md,
    seventh round). Pydantic still checks them, and
    a bad one is the same 422 ``invalid_request`` naming it."""

    model_config = ConfigDict(frozen=True)

    dry_run: bool = Field(False, description="Validate only; store nothing.")
    atomic: bool = Field(False, description="Reject the whole message if any item fails.")
    idempotency_key: str | None = Field(None, max_length=255)
    x_vendor_name: str | None = Field(None, max_length=200)
    x_software_name: str | None = Field(None, max_length=200)
    x_software_version: str | None = Field(None, max_length=100)
    x_message_sequence: int | None = Field(
        None, ge=1, le=10**15, description="The unit's running number for this message."
    )


# Where each parameter comes from: (OpenAPI "in", name in the request).
_PARAMETER_SOURCES = {
    name: ("query", name) if name in ("dry_run", "atomic") else ("header", name.replace("_", "-"))
    for name in SubmissionParameters.model_fields
}


def submission_parameters(request: Request) -> SubmissionParameters:
    """The submission's parameters from its query string and headers (a header's first value),
    or 422 ``invalid_request`` with the location of each bad one, as FastAPI reports them."""
    query, headers = request.query_params, request.headers
    given = {}
    for name, (where, key) in _PARAMETER_SOURCES.items():
        value = (query if where == "query" else headers).get(key)
        if value is not None:
            given[name] = value
    try:
        return SubmissionParameters.model_validate(given)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": _PARAMETER_SOURCES[str(error["loc"][0])]} for error in exc.errors()]
        ) from None


def _parameters_doc() -> list[dict[str, Any]]:
    """The parameters' OpenAPI description, from the model FastAPI no longer sees."""
    properties = SubmissionParameters.model_json_schema()["properties"]
    return [
        {
            "name": key,
            "in": where,
            "required": False,
            "schema": properties[name],
            **(
                {"description": properties[name]["description"]}
                if "description" in properties[name]
                else {}
            ),
        }
        for name, (where, key) in _PARAMETER_SOURCES.items()
    ]


_PARAMETERS_DOC = _parameters_doc()


def model_lifecycle_headers(model: MessageModel, today: date) -> dict[str, str]:
    """Headers announcing a deprecated version (RFC 8594 ``Sunset``); a version past its sunset
    date is refused with 410."""
    if model.status != "deprecated":
        return {}
    if model.sunset is not None and today > model.sunset:
        raise Problem(
            410,
            "model_retired",
            "This message model version is retired",
            f"{model.key} was retired on {model.sunset.isoformat()}; "
            "see GET /v1/message-types for the current version.",
        )
    headers = {"Deprecation": "true"}
    if model.sunset is not None:
        sunset = datetime.combine(model.sunset, time(23, 59, 59), UTC)
        headers["Sunset"] = format_datetime(sunset, usegmt=True)
    return headers


@router.post(
    "/messages/{message_type}/{version}",
    status_code=202,
    openapi_extra={**_BODY_DOC, "parameters": _PARAMETERS_DOC},
    summary="Submit a message; answers 202 with a receipt once its events are stored",
)
async def submit_message(
    message_type: str,
    version: int,
    request: Request,
    principal: Reporter,
    runtime: RuntimeDep,
    submissions: SubmissionsDep,
) -> OrjsonResponse:
    params = submission_parameters(request)  # a bad one is 422 first, as when FastAPI read them
    model = published_model(runtime, message_type, version)
    lifecycle_headers = model_lifecycle_headers(model, date.today())
    settings = runtime.settings
    body = await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
    message = parse_json(request, body)
    meta = SubmissionMeta(
        idempotency_key=params.idempotency_key,
        vendor=params.x_vendor_name,
        software=params.x_software_name,
        software_version=params.x_software_version,
        correlation_id=request.state.correlation_id,
        sequence=params.x_message_sequence,
    )
    dry_run = params.dry_run
    result = await submissions.submit(
        principal, model, body, message, meta, dry_run=dry_run, atomic=params.atomic
    )
    headers = {"Location": f"/v1/receipts/{result.receipt['receipt_id']}", **lifecycle_headers}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return OrjsonResponse(result.receipt, status_code=200 if dry_run else 202, headers=headers)
