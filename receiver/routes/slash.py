"""``GET /keys`` and ``POST /message``: FHI's SLASH intake, in front of the same pipeline as
``POST /v1/messages/{message_type}/{version}``. The protocol and the error codes are described in
:mod:`receiver.slash`; every answer of ``POST /message`` is in SLASH's format, never
problem+json."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import date
from typing import Any

from fastapi import APIRouter, Request, Security

from receiver.deps import RuntimeDep, SubmissionsDep
from receiver.openapi import DPOP
from receiver.problems import Problem
from receiver.responses import OrjsonResponse
from receiver.routes.messages import model_lifecycle_headers, read_body
from receiver.slash.crypto import (
    BLOCK_BYTES,
    IV_BYTES,
    b64url,
    decode_body,
    decrypt_and_verify,
    unwrap_key,
)
from receiver.slash.errors import (
    SlashCode,
    SlashError,
    as_guid,
    error_entry,
    from_problem,
    item_errors,
)
from receiver.slash.keys import SlashKey
from receiver.slash.request import (
    REPORT_SCOPE,
    VENDOR_HEADERS,
    MessageClaims,
    access_token,
    authenticate,
    authorise,
    check_media_type,
    key_named,
    key_store,
    message_claims,
    parse_message,
    vendor_headers,
)
from receiver.submission import RETRY_AFTER_SECONDS, SubmissionMeta, SubmissionService
from wiring.runtime import Runtime

log = logging.getLogger(__name__)

router = APIRouter(tags=["slash"])

THREAD_ABOVE_BYTES = 256 * 1024  # decrypt larger bodies off the event loop


_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "base64(IV (16 bytes) || AES-256-CBC(PKCS#7(message JSON in UTF-8))). "
        "The DPoP proof carries msg_type, msg_version, msg_hash, enc_sym_key and enc_key_id.",
        "content": {"text/plain": {"schema": {"type": "string", "format": "byte"}}},
    },
    "parameters": [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
        for name in ("Authorization", "DPoP", *VENDOR_HEADERS)
    ],
}

_ANSWER_EXAMPLE = {
    "delivered": False,
    "errors": [error_entry(SlashCode.EXPIRED_KEY, "Fetch GET /keys.", property_name="enc_key_id")],
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Delivered. X-Correlation-ID and Location name the receipt.",
        "content": {
            "application/json": {
                "example": {
                    "delivered": True,
                    "errors": [],
                    "receiptId": "r_…",
                    "receiptStatus": "accepted",
                    "receiptUrl": "/v1/receipts/r_…",
                }
            }
        },
    },
    **{
        status: {
            "description": text,
            "content": {"application/json": {"example": _ANSWER_EXAMPLE}},
        }
        for status, text in (
            (400, "Not delivered: see errors (SLASH error codes)."),
            (401, "Not delivered: the token or DPoP proof was refused."),
            (403, "Not delivered: this unit may not send this."),
            (413, "Not delivered: too large."),
            (409, "Not delivered: this msg_hash was stored with other content."),
            (415, "Not delivered: send text/plain."),
            (503, "Not delivered: retry the same message after Retry-After seconds."),
        )
    },
}


@router.get(
    "/keys",
    summary="SLASH: the public keys to wrap a message's AES key with (use the first)",
)
async def public_keys(request: Request) -> OrjsonResponse:
    store = key_store(request)
    await store.refresh()
    return OrjsonResponse(
        [key.published() for key in store.published()],
        headers={"Cache-Control": f"public, max-age={store.cache_seconds()}"},
    )


@router.post(
    "/message",
    summary="SLASH: submit an encrypted, DPoP-signed message; answers in SLASH's format",
    openapi_extra=_BODY_DOC,
    responses=_RESPONSES,
    dependencies=[Security(DPOP, scopes=[REPORT_SCOPE])],
)
async def receive_message(
    request: Request, runtime: RuntimeDep, submissions: SubmissionsDep
) -> OrjsonResponse:
    try:
        return await _receive(request, runtime, submissions)
    except SlashError as exc:
        log.info(
            "SLASH message not delivered: %d (correlation id %s)",
            exc.code,
            request.state.correlation_id,
        )
        headers = {"X-Correlation-ID": as_guid(request.state.correlation_id), **exc.headers}
        return OrjsonResponse(exc.body(), status_code=exc.status, headers=headers)


async def _receive(
    request: Request, runtime: Runtime, submissions: SubmissionService
) -> OrjsonResponse:
    token = access_token(request)
    principal, proof = authenticate(request, token)
    authorise(request, principal)
    vendor = vendor_headers(request)
    check_media_type(request)
    claims = message_claims(proof)
    model = runtime.catalogue.get(claims.message_type, claims.version)
    if model is None:
        raise _not_published(runtime, claims)
    try:
        lifecycle_headers = model_lifecycle_headers(model, date.today())
    except Problem as exc:
        raise SlashError(
            SlashCode.SCHEMA_NOT_FOUND, 400, exc.detail or exc.title, property_name="msg_version"
        ) from exc

    store = key_store(request)
    await store.refresh()
    key = key_named(store, claims.key_id)

    limit = runtime.settings.max_body_bytes
    try:
        body = await read_body(request, encoded_limit(limit), runtime.settings.body_timeout_seconds)
    except Problem as exc:
        if exc.code == "body_timeout":  # SLASH clients stop on 4xx; a slow link is worth a retry
            raise SlashError(
                SlashCode.STORAGE_ERROR,
                503,
                "The message did not arrive in time and was not stored; send it again.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from exc
        raise too_large(limit) from exc
    data = decode_body(body)
    if len(data) - IV_BYTES - BLOCK_BYTES > limit:
        raise too_large(limit)
    if len(data) > THREAD_ABOVE_BYTES:
        plaintext = await asyncio.to_thread(open_message, key, claims, data)
    else:
        plaintext = open_message(key, claims, data)
    if len(plaintext) > limit:
        raise too_large(limit)
    message = parse_message(plaintext)

    meta = SubmissionMeta(
        idempotency_key="slash:" + b64url(claims.digest),
        vendor=vendor.vendor,
        software=vendor.software,
        software_version=vendor.software_version,
        correlation_id=request.state.correlation_id,
    )
    refuse = runtime.settings.slash_rejected_items == "refuse_message"
    try:
        result = await submissions.submit(principal, model, plaintext, message, meta, atomic=refuse)
    except Problem as exc:
        raise from_problem(exc) from exc

    receipt = result.receipt
    receipt_id = str(receipt["receipt_id"])
    log.info(
        "SLASH message delivered: receipt %s, %s v%d, export software %s, extracted %s",
        receipt_id,
        model.message_type,
        model.version,
        vendor.export_software_version,
        vendor.data_extraction_date.isoformat(),
    )
    headers = {
        "X-Correlation-ID": receipt_id,
        "Location": f"/v1/receipts/{receipt_id}",
        **lifecycle_headers,
    }
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return OrjsonResponse(_delivered(receipt, receipt_id), headers=headers)


def _not_published(runtime: Runtime, claims: MessageClaims) -> SlashError:
    """2006, naming the claim that is wrong: ``msg_type`` for a type we do not publish (and its
    published spelling when only the case differs), ``msg_version`` for a version of a type we
    do."""
    versions = [m.version for m in runtime.catalogue if m.message_type == claims.message_type]
    if versions:
        return SlashError(
            SlashCode.SCHEMA_NOT_FOUND,
            400,
            f"{claims.message_type} v{claims.version} is not published; its versions are "
            f"{', '.join(map(str, sorted(versions)))} (GET /v1/message-types).",
            property_name="msg_version",
        )
    spelled = sorted(
        {m.message_type for m in runtime.catalogue}, key=lambda t: t != claims.message_type
    )
    alike = [t for t in spelled if t.lower() == claims.message_type.lower()]
    hint = f" Message types are case-sensitive: did you mean {alike[0]}?" if alike else ""
    return SlashError(
        SlashCode.SCHEMA_NOT_FOUND,
        400,
        f"{claims.message_type} is not a published message type (GET /v1/message-types).{hint}",
        property_name="msg_type",
    )


def _delivered(receipt: dict[str, Any], receipt_id: str) -> dict[str, Any]:
    """``delivered: true``; where items were rejected (only when the deployment delivers the
    valid items), a pointer to the receipt and then each rejected item's errors."""
    url = f"/v1/receipts/{receipt_id}"
    counts = receipt.get("counts") or {}
    rejected = int(counts.get("rejected", 0))
    errors = []
    if rejected:
        items = int(counts.get("items", 0))
        errors.append(
            error_entry(
                SlashCode.SCHEMA_VALIDATION_FAILED,
                f"Receipt {receipt_id}: GET {url} lists each finding; the other items were "
                "stored. Correct the rejected items and send them again.",
                description=f"{rejected} of {items} items were rejected by validation",
            )
        )
        errors += item_errors(receipt.get("items") or [])
    return {
        "delivered": True,
        "errors": errors,
        "receiptId": receipt_id,
        "receiptStatus": receipt.get("status"),
        "receiptUrl": url,
    }


def encoded_limit(limit: int) -> int:
    """The largest body that can hold ``limit`` plaintext bytes: base64 of IV + padded
    ciphertext, with room for line breaks and quotes."""
    encoded = 4 * math.ceil((IV_BYTES + limit + BLOCK_BYTES) / 3)
    return encoded + encoded // 32 + 1024


def too_large(limit: int) -> SlashError:
    return SlashError(
        SlashCode.PAYLOAD_TOO_LARGE,
        413,
        f"At most {limit} bytes of message JSON per request; split the delivery.",
    )


def open_message(key: SlashKey, claims: MessageClaims, data: bytes) -> bytes:
    return decrypt_and_verify(unwrap_key(key, claims.enc_sym_key), data, claims.digest)
