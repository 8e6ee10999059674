"""``GET /keys`` and ``POST /message``: FHI's SLASH intake, in front of the same pipeline as
``POST /v1/messages/{message_type}/{version}``. The protocol and the error codes are described in
:mod:`receiver.slash`; every answer of ``POST /message`` is in SLASH's format, never
problem+json."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request

from receiver.auth import AuthError, Principal, TokenVerifier
from receiver.deps import RuntimeDep, SubmissionsDep, rate_limit
from receiver.dpop import DPOP_ALGORITHMS, DpopError, DpopProof, DpopVerifier
from receiver.problems import Problem
from receiver.responses import OrjsonResponse
from receiver.routes.messages import model_lifecycle_headers, read_body
from receiver.slash import (
    BLOCK_BYTES,
    IV_BYTES,
    ExpiredKeyError,
    SlashCode,
    SlashError,
    SlashKey,
    SlashKeyStore,
    UnknownKeyError,
    b64decode_lenient,
    b64url,
    decode_body,
    decrypt_and_verify,
    error_entry,
    unwrap_key,
)
from receiver.submission import RETRY_AFTER_SECONDS, SubmissionMeta, SubmissionService
from wiring.runtime import Runtime
from wiring.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["slash"])

REPORT_SCOPE = "intake:report"
VENDOR_HEADERS = (
    "x-vendor-name",
    "x-software-name",
    "x-software-version",
    "x-export-software-version",
    "x-data-extraction-date",
)
MAX_HEADER_CHARS = 200
ACCEPTED_MEDIA_TYPES = frozenset({"text/plain", "application/octet-stream", "application/base64"})
THREAD_ABOVE_BYTES = 256 * 1024  # decrypt larger bodies off the event loop
MAX_FINDINGS = 100
UTF8_BOM = b"\xef\xbb\xbf"

_MESSAGE_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
_VERSION = re.compile(r"[0-9]{1,6}")
_EXTRACTION_DATE = re.compile(r"[0-9]{2}\.[0-9]{2}\.[0-9]{4}")
# DpopError messages that mean "a valid proof, but not for this request" (2005); the others mean
# a malformed proof (2004).
_PROOF_MISMATCH = ("too old", "another", "already used")


def open_key_store(settings: Settings) -> SlashKeyStore:
    """The key store the lifespan puts on ``app.state.slash_keys``."""
    return SlashKeyStore.from_settings(settings)


@dataclass(frozen=True, slots=True)
class MessageClaims:
    message_type: str
    version: int
    digest: bytes  # SHA-256 of the plaintext, from msg_hash
    enc_sym_key: str
    key_id: str


@dataclass(frozen=True, slots=True)
class VendorHeaders:
    vendor: str
    software: str
    software_version: str
    export_software_version: str
    data_extraction_date: date


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
    store = _key_store(request)
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
        return OrjsonResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _receive(
    request: Request, runtime: Runtime, submissions: SubmissionService
) -> OrjsonResponse:
    token = _access_token(request)
    principal, proof = _authenticate(request, token)
    _authorise(request, principal)
    vendor = _vendor_headers(request)
    _check_media_type(request)
    claims = _message_claims(proof)
    model = runtime.catalogue.get(claims.message_type, claims.version)
    if model is None:
        raise SlashError(
            SlashCode.SCHEMA_NOT_FOUND,
            400,
            f"{claims.message_type} v{claims.version} is not published; see GET /v1/message-types.",
            property_name="msg_type",
        )
    try:
        lifecycle_headers = model_lifecycle_headers(model, date.today())
    except Problem as exc:
        raise SlashError(
            SlashCode.SCHEMA_NOT_FOUND, 400, exc.detail or exc.title, property_name="msg_version"
        ) from exc

    store = _key_store(request)
    await store.refresh()
    key = _key(store, claims.key_id)

    limit = runtime.settings.max_body_bytes
    try:
        body = await read_body(
            request, _encoded_limit(limit), runtime.settings.body_timeout_seconds
        )
    except Problem as exc:
        if exc.code == "body_timeout":  # SLASH clients stop on 4xx; a slow link is worth a retry
            raise SlashError(
                SlashCode.STORAGE_ERROR,
                503,
                "The message did not arrive in time and was not stored; send it again.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from exc
        raise _too_large(limit) from exc
    data = decode_body(body)
    if len(data) - IV_BYTES - BLOCK_BYTES > limit:
        raise _too_large(limit)
    if len(data) > THREAD_ABOVE_BYTES:
        plaintext = await asyncio.to_thread(_open, key, claims, data)
    else:
        plaintext = _open(key, claims, data)
    if len(plaintext) > limit:
        raise _too_large(limit)
    message = _parse(plaintext)

    meta = SubmissionMeta(
        idempotency_key="slash:" + b64url(claims.digest),
        vendor=vendor.vendor,
        software=vendor.software,
        software_version=vendor.software_version,
        correlation_id=request.state.correlation_id,
    )
    try:
        result = await submissions.submit(principal, model, plaintext, message, meta)
    except Problem as exc:
        raise _from_problem(exc) from exc

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


def _delivered(receipt: dict[str, Any], receipt_id: str) -> dict[str, Any]:
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
    return {
        "delivered": True,
        "errors": errors,
        "receiptId": receipt_id,
        "receiptStatus": receipt.get("status"),
        "receiptUrl": url,
    }


# --- authentication --------------------------------------------------------------------------


def _unauthorized(
    code: SlashCode, details: str, property_name: str, *, error: str | None = None
) -> SlashError:
    challenge = f'DPoP realm="register-intake", algs="{" ".join(DPOP_ALGORITHMS)}"'
    if error:
        challenge += f', error="{error}"'
    return SlashError(
        code,
        401,
        details,
        property_name=property_name,
        headers={"WWW-Authenticate": challenge},
    )


def _access_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized(
            SlashCode.HTTP_HEADER_MISSING,
            "Send 'Authorization: DPoP <access token>'.",
            "Authorization",
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "dpop" or not token:
        raise _unauthorized(
            SlashCode.HTTP_HEADER_VALIDATION,
            "This endpoint needs a DPoP-bound token: 'Authorization: DPoP <access token>'.",
            "Authorization",
            error="invalid_token",
        )
    if not request.headers.get("dpop"):
        raise _unauthorized(
            SlashCode.HTTP_HEADER_MISSING,
            "Send a DPoP proof for this request in the 'DPoP' header.",
            "DPoP",
            error="invalid_dpop_proof",
        )
    return token


def _authenticate(request: Request, token: str) -> tuple[Principal, DpopProof]:
    verifier: TokenVerifier = request.app.state.verifier
    try:
        principal = verifier.verify(token)
    except AuthError as exc:
        if "no reporting unit" in str(exc):
            raise _unauthorized(
                SlashCode.MISSING_ORGANIZATION_CLAIM,
                "The access token names no organisation (orgnr_parent/orgnr_child).",
                "Authorization",
                error="invalid_token",
            ) from exc
        raise _unauthorized(
            SlashCode.HTTP_HEADER_VALIDATION,
            "The access token is invalid or expired.",
            "Authorization",
            error="invalid_token",
        ) from exc
    if principal.bound_jkt is None:
        raise _unauthorized(
            SlashCode.MISSING_SIGNATURE_CLAIM,
            "The access token is not bound to a DPoP key (no cnf.jkt); ask HelseID for a "
            "DPoP token.",
            "Authorization",
            error="invalid_token",
        )
    dpop: DpopVerifier = request.app.state.dpop
    try:
        proof = dpop.verify(
            request.headers["dpop"],
            method=request.method,
            url=str(request.url),
            access_token=token,
            expected_jkt=principal.bound_jkt,
        )
    except DpopError as exc:
        reason = str(exc)
        mismatch = any(marker in reason for marker in _PROOF_MISMATCH)
        raise _unauthorized(
            SlashCode.SIGNATURE_MISMATCH if mismatch else SlashCode.BAD_SIGNATURE_CLAIM,
            f"The DPoP proof was refused: {reason}.",
            "DPoP",
            error="invalid_dpop_proof",
        ) from exc
    return principal, proof


def _authorise(request: Request, principal: Principal) -> None:
    try:
        rate_limit(request, principal)
    except Problem as exc:
        wait = exc.headers.get("Retry-After", "1")
        raise SlashError(
            SlashCode.STORAGE_ERROR,
            503,
            f"Too many messages from this unit; send the same message again in {wait} s.",
            headers={"Retry-After": wait},
        ) from exc
    if REPORT_SCOPE not in principal.scopes:
        raise SlashError(
            SlashCode.ORGANIZATION_NOT_ALLOWED,
            403,
            f"The access token does not allow reporting (scope {REPORT_SCOPE}).",
            property_name="Authorization",
        )


# --- headers and claims ----------------------------------------------------------------------


def _header_error(details: str, name: str, status: int = 400) -> SlashError:
    return SlashError(SlashCode.HTTP_HEADER_VALIDATION, status, details, property_name=name)


def _vendor_headers(request: Request) -> VendorHeaders:
    values = {name: request.headers.get(name, "").strip() for name in VENDOR_HEADERS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise SlashError(
            SlashCode.HTTP_HEADER_MISSING,
            400,
            "Missing: " + ", ".join(missing),
            errors=[
                error_entry(
                    SlashCode.HTTP_HEADER_MISSING,
                    f"The header {name} is required.",
                    property_name=name,
                )
                for name in missing
            ],
        )
    for name, value in values.items():
        if len(value) > MAX_HEADER_CHARS:
            raise _header_error(f"{name} is longer than {MAX_HEADER_CHARS} characters.", name)
    raw_date = values["x-data-extraction-date"]
    try:
        if not _EXTRACTION_DATE.fullmatch(raw_date):
            raise ValueError(raw_date)
        extracted = datetime.strptime(raw_date, "%d.%m.%Y").date()
    except ValueError as exc:
        raise _header_error(
            f"x-data-extraction-date must be a date as dd.MM.yyyy, not {raw_date!r}.",
            "x-data-extraction-date",
        ) from exc
    if extracted > date.today() + timedelta(days=1):
        raise _header_error(
            f"x-data-extraction-date {raw_date} is in the future.", "x-data-extraction-date"
        )
    return VendorHeaders(
        vendor=values["x-vendor-name"],
        software=values["x-software-name"],
        software_version=values["x-software-version"],
        export_software_version=values["x-export-software-version"],
        data_extraction_date=extracted,
    )


def _check_media_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise _header_error(
            f"Send the encrypted message as text/plain (base64), not {media_type or '?'}.",
            "Content-Type",
            415,
        )


def _message_claims(proof: DpopProof) -> MessageClaims:
    claims = proof.claims
    message_type = claims.get("msg_type")
    if not isinstance(message_type, str) or not _MESSAGE_TYPE.fullmatch(message_type):
        raise SlashError(
            SlashCode.INVALID_MESSAGE_TYPE_VERSION,
            400,
            "The DPoP proof must name the message type in msg_type, e.g. 'HST_Avtale'.",
            property_name="msg_type",
        )
    raw_version = claims.get("msg_version")
    if isinstance(raw_version, int) and not isinstance(raw_version, bool) and raw_version > 0:
        version = raw_version
    elif isinstance(raw_version, str) and _VERSION.fullmatch(raw_version.strip()):
        version = int(raw_version.strip())
    else:
        raise SlashError(
            SlashCode.INVALID_MESSAGE_TYPE_VERSION,
            400,
            "The DPoP proof must name the message version in msg_version, e.g. '1'.",
            property_name="msg_version",
        )
    raw_hash = claims.get("msg_hash")
    try:
        if not isinstance(raw_hash, str):
            raise ValueError("msg_hash is missing")
        digest = b64decode_lenient(raw_hash)
        if len(digest) != 32:
            raise ValueError("not 32 bytes")
    except (ValueError, UnicodeEncodeError) as exc:
        raise SlashError(
            SlashCode.INVALID_DIGEST,
            400,
            "msg_hash must be the base64 (or base64url) SHA-256 of the message.",
            property_name="msg_hash",
        ) from exc
    enc_sym_key = claims.get("enc_sym_key")
    if not isinstance(enc_sym_key, str) or not enc_sym_key.strip():
        raise SlashError(
            SlashCode.DECRYPTION_ERROR_ASYMMETRIC,
            400,
            "The DPoP proof must carry the wrapped AES key in enc_sym_key.",
            property_name="enc_sym_key",
        )
    key_id = claims.get("enc_key_id")
    if not isinstance(key_id, str) or not key_id.strip():
        raise SlashError(
            SlashCode.INVALID_KEY_ID,
            400,
            "The DPoP proof must name the key from GET /keys in enc_key_id.",
            property_name="enc_key_id",
        )
    return MessageClaims(message_type, version, digest, enc_sym_key, key_id.strip())


# --- keys, body, content ---------------------------------------------------------------------


def _key_store(request: Request) -> SlashKeyStore:
    store: SlashKeyStore = request.app.state.slash_keys
    return store


def _key(store: SlashKeyStore, key_id: str) -> SlashKey:
    try:
        return store.key_for(key_id)
    except UnknownKeyError as exc:
        raise SlashError(
            SlashCode.INVALID_KEY_ID,
            400,
            f"{key_id[:80]!r} is not one of our keys; fetch GET /keys and use the first key.",
            property_name="enc_key_id",
        ) from exc
    except ExpiredKeyError as exc:
        raise SlashError(
            SlashCode.EXPIRED_KEY,
            400,
            f"Key {key_id} has expired; fetch GET /keys and use the first key.",
            property_name="enc_key_id",
        ) from exc


def _encoded_limit(limit: int) -> int:
    """The largest body that can hold ``limit`` plaintext bytes: base64 of IV + padded
    ciphertext, with room for line breaks and quotes."""
    encoded = 4 * math.ceil((IV_BYTES + limit + BLOCK_BYTES) / 3)
    return encoded + encoded // 32 + 1024


def _too_large(limit: int) -> SlashError:
    return SlashError(
        SlashCode.PAYLOAD_TOO_LARGE,
        413,
        f"At most {limit} bytes of message JSON per request; split the delivery.",
    )


def _open(key: SlashKey, claims: MessageClaims, data: bytes) -> bytes:
    return decrypt_and_verify(unwrap_key(key, claims.enc_sym_key), data, claims.digest)


def _parse(plaintext: bytes) -> Any:
    text = plaintext[len(UTF8_BOM) :] if plaintext.startswith(UTF8_BOM) else plaintext
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SlashError(
            SlashCode.INVALID_JSON, 400, f"The decrypted message is not UTF-8 JSON: {exc}"
        ) from exc


def _from_problem(problem: Problem) -> SlashError:
    """The pipeline's refusal (see :mod:`receiver.problems`) in SLASH's terms."""
    details = problem.detail or problem.title
    if problem.code == "unit_mismatch":
        return SlashError(SlashCode.ORGANIZATION_NOT_ALLOWED, 403, details)
    if problem.code == "invalid_message":
        findings = [f for f in problem.extra.get("findings", []) if f.get("severity") == "error"][
            :MAX_FINDINGS
        ]
        errors = [
            error_entry(
                SlashCode.SCHEMA_VALIDATION_FAILED,
                f"{f.get('rule_id')}: {f.get('message_nb')}",
                property_name=f.get("path"),
                description=str(f.get("message_en")),
            )
            for f in findings
        ]
        return SlashError(SlashCode.SCHEMA_VALIDATION_FAILED, 400, details, errors=errors or None)
    if problem.code in ("too_many_items", "payload_too_large"):
        return SlashError(SlashCode.PAYLOAD_TOO_LARGE, 413, details)
    if problem.code == "idempotency_conflict":
        return SlashError(
            SlashCode.STORAGE_ERROR,
            409,
            "A message with this msg_hash was stored with other content.",
            property_name="msg_hash",
        )
    if problem.status >= 500:
        return SlashError(
            SlashCode.STORAGE_ERROR,
            503,
            "The message was not stored; send the same message again later.",
            headers={k: v for k, v in problem.headers.items() if k.lower() == "retry-after"},
        )
    return SlashError(SlashCode.SCHEMA_VALIDATION_FAILED, 400, details)
