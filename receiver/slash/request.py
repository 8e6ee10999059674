"""Reading a SLASH request: the DPoP-bound access token and its proof, the unit's right to
report, the vendor headers, the proof's message claims, the key they name, and the decrypted
message as JSON. Each refusal is a :class:`receiver.slash.errors.SlashError`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from fastapi import Request

from receiver.auth import AuthError, Principal, TokenVerifier
from receiver.deps import rate_limit
from receiver.dpop import DpopError, DpopProof, DpopVerifier
from receiver.jose import JosePolicy
from receiver.problems import Problem
from receiver.slash.crypto import b64decode_lenient
from receiver.slash.errors import SlashCode, SlashError, error_entry
from receiver.slash.keys import ExpiredKeyError, SlashKey, SlashKeyStore, UnknownKeyError

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
UTF8_BOM = b"\xef\xbb\xbf"

_MESSAGE_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
_VERSION = re.compile(r"[0-9]{1,6}")
_EXTRACTION_DATE = re.compile(r"[0-9]{2}\.[0-9]{2}\.[0-9]{4}")


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


# --- authentication --------------------------------------------------------------------------


def _unauthorized(
    request: Request,
    code: SlashCode,
    details: str,
    property_name: str,
    *,
    error: str | None = None,
) -> SlashError:
    """A 401 with the DPoP challenge of RFC 9449 §7.1 (``algs``; ``error`` once a credential
    was sent)."""
    policy: JosePolicy = request.app.state.dpop.policy
    challenge = policy.challenge("DPoP", error=error, description=details if error else None)
    return SlashError(
        code,
        401,
        details,
        property_name=property_name,
        headers={"WWW-Authenticate": challenge},
    )


def access_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized(
            request,
            SlashCode.HTTP_HEADER_MISSING,
            "Send 'Authorization: DPoP <access token>'.",
            "Authorization",
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "dpop" or not token:
        raise _unauthorized(
            request,
            SlashCode.HTTP_HEADER_VALIDATION,
            "This endpoint needs a DPoP-bound token: 'Authorization: DPoP <access token>'.",
            "Authorization",
            error="invalid_token",
        )
    if not request.headers.get("dpop"):
        raise _unauthorized(
            request,
            SlashCode.HTTP_HEADER_MISSING,
            "Send a DPoP proof for this request in the 'DPoP' header.",
            "DPoP",
            error="invalid_dpop_proof",
        )
    return token


def authenticate(request: Request, token: str) -> tuple[Principal, DpopProof]:
    verifier: TokenVerifier = request.app.state.verifier
    try:
        principal = verifier.verify(token)
    except AuthError as exc:
        if "no reporting unit" in str(exc):
            raise _unauthorized(
                request,
                SlashCode.MISSING_ORGANIZATION_CLAIM,
                "The access token names no organisation (orgnr_parent/orgnr_child).",
                "Authorization",
                error="invalid_token",
            ) from exc
        raise _unauthorized(
            request,
            SlashCode.HTTP_HEADER_VALIDATION,
            "The access token is invalid or expired.",
            "Authorization",
            error="invalid_token",
        ) from exc
    if principal.bound_jkt is None:
        raise _unauthorized(
            request,
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
        mismatch = exc.mismatch
        raise _unauthorized(
            request,
            SlashCode.SIGNATURE_MISMATCH if mismatch else SlashCode.BAD_SIGNATURE_CLAIM,
            f"The DPoP proof was refused: {reason}.",
            "DPoP",
            error="invalid_dpop_proof",
        ) from exc
    return principal, proof


def authorise(request: Request, principal: Principal) -> None:
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


def vendor_headers(request: Request) -> VendorHeaders:
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


def check_media_type(request: Request) -> None:
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


def message_claims(proof: DpopProof) -> MessageClaims:
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


def key_store(request: Request) -> SlashKeyStore:
    store: SlashKeyStore = request.app.state.slash_keys
    return store


def key_named(store: SlashKeyStore, key_id: str) -> SlashKey:
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


def parse_message(plaintext: bytes) -> Any:
    text = plaintext[len(UTF8_BOM) :] if plaintext.startswith(UTF8_BOM) else plaintext
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SlashError(
            SlashCode.INVALID_JSON, 400, f"The decrypted message is not UTF-8 JSON: {exc}"
        ) from exc
