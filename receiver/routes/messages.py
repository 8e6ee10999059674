"""``POST /v1/messages/{message_type}/{version}`` — the reporting endpoint."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time
from email.utils import format_datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request

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
    openapi_extra=_BODY_DOC,
    summary="Submit a message; answers 202 with a receipt once its events are stored",
)
async def submit_message(
    message_type: str,
    version: int,
    request: Request,
    principal: Reporter,
    runtime: RuntimeDep,
    submissions: SubmissionsDep,
    dry_run: Annotated[bool, Query(description="Validate only; store nothing.")] = False,
    atomic: Annotated[
        bool, Query(description="Reject the whole message if any item fails.")
    ] = False,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    x_vendor_name: Annotated[str | None, Header(max_length=200)] = None,
    x_software_name: Annotated[str | None, Header(max_length=200)] = None,
    x_software_version: Annotated[str | None, Header(max_length=100)] = None,
    x_message_sequence: Annotated[
        int | None,
        Header(ge=1, le=10**15, description="The unit's running number for this message."),
    ] = None,
) -> OrjsonResponse:
    model = published_model(runtime, message_type, version)
    lifecycle_headers = model_lifecycle_headers(model, date.today())
    settings = runtime.settings
    body = await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
    message = parse_json(request, body)
    meta = SubmissionMeta(
        idempotency_key=idempotency_key,
        vendor=x_vendor_name,
        software=x_software_name,
        software_version=x_software_version,
        correlation_id=request.state.correlation_id,
        sequence=x_message_sequence,
    )
    result = await submissions.submit(
        principal, model, body, message, meta, dry_run=dry_run, atomic=atomic
    )
    headers = {"Location": f"/v1/receipts/{result.receipt['receipt_id']}", **lifecycle_headers}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return OrjsonResponse(result.receipt, status_code=200 if dry_run else 202, headers=headers)
