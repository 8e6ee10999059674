"""SLASH's error codes (FHI's own, listed in :mod:`receiver.slash`), the entries of its
``errors`` list, and the refusal that carries them; the pipeline's problems in SLASH's terms."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from receiver.problems import Problem

MAX_FINDINGS = 100  # SchemaValidationFailed entries in one answer
_CORRELATION_NAMESPACE = uuid.UUID("9a4c7e2b-1f3d-5a6e-8b0c-2d4f6a8c0e13")


class SlashCode(IntEnum):
    HTTP_HEADER_MISSING = 1001
    HTTP_HEADER_VALIDATION = 1002
    INVALID_MESSAGE_TYPE_VERSION = 1003
    INVALID_KEY_ID = 1004
    INVALID_DIGEST = 1005
    PAYLOAD_HASH_MISMATCH = 1006
    EXPIRED_KEY = 1007
    DECRYPTION_ERROR_ASYMMETRIC = 1008
    DECRYPTION_ERROR_SYMMETRIC = 1009
    ORGANIZATION_NOT_ALLOWED = 2001
    MISSING_ORGANIZATION_CLAIM = 2002
    MISSING_SIGNATURE_CLAIM = 2003
    BAD_SIGNATURE_CLAIM = 2004
    SIGNATURE_MISMATCH = 2005
    SCHEMA_NOT_FOUND = 2006
    INVALID_JSON = 2007
    SCHEMA_VALIDATION_FAILED = 2008
    PAYLOAD_TOO_LARGE = 2009
    STORAGE_ERROR = 2010


# FHI's names and (translated) descriptions, used in ``errorMessage``.
_TEXTS: dict[SlashCode, tuple[str, str]] = {
    SlashCode.HTTP_HEADER_MISSING: ("HttpHeaderMissing", "One or more HTTP headers are missing"),
    SlashCode.HTTP_HEADER_VALIDATION: (
        "HttpHeaderValidation",
        "One or more HTTP headers have an invalid value",
    ),
    SlashCode.INVALID_MESSAGE_TYPE_VERSION: (
        "InvalidMessageTypeVersion",
        "Invalid message type and/or message version",
    ),
    SlashCode.INVALID_KEY_ID: ("InvalidKeyId", "Invalid public key"),
    SlashCode.INVALID_DIGEST: ("InvalidDigest", "Invalid hash of the payload"),
    SlashCode.PAYLOAD_HASH_MISMATCH: (
        "PayloadHashMismatch",
        "The hash of the payload does not match the proof's msg_hash",
    ),
    SlashCode.EXPIRED_KEY: (
        "ExpiredKey",
        "The key used to encrypt the symmetric key has expired",
    ),
    SlashCode.DECRYPTION_ERROR_ASYMMETRIC: (
        "DecryptionErrorForAsymmetricalKey",
        "The symmetric key could not be decrypted",
    ),
    SlashCode.DECRYPTION_ERROR_SYMMETRIC: (
        "DecryptionErrorForSymmetricalKey",
        "The payload could not be decrypted with the symmetric key",
    ),
    SlashCode.ORGANIZATION_NOT_ALLOWED: (
        "ShouldNotReceiveMessageForGivenOrganizationAndMessageType",
        "This organisation may not send this message",
    ),
    SlashCode.MISSING_ORGANIZATION_CLAIM: (
        "MissingOrganizationNumberClaimFromHelseIdToken",
        "The access token has no organisation number",
    ),
    SlashCode.MISSING_SIGNATURE_CLAIM: (
        "MissingSignatureClaimFromHelseIdToken",
        "The access token is not bound to a DPoP key",
    ),
    SlashCode.BAD_SIGNATURE_CLAIM: (
        "BadSignatureClaimFromHelseIdToken",
        "The DPoP proof is malformed or its signature is invalid",
    ),
    SlashCode.SIGNATURE_MISMATCH: (
        "HelseIdSignatureDoesNotMatchHeaderValues",
        "The DPoP proof does not match the request",
    ),
    SlashCode.SCHEMA_NOT_FOUND: (
        "SchemaNotFound",
        "No schema for this message type and version",
    ),
    SlashCode.INVALID_JSON: ("InvalidJsonMessage", "The decrypted message is not JSON"),
    SlashCode.SCHEMA_VALIDATION_FAILED: (
        "SchemaValidationFailed",
        "The decrypted message does not follow its schema",
    ),
    SlashCode.PAYLOAD_TOO_LARGE: ("PayloadSizeLimitExceeded", "Payload size exceeded limit"),
    SlashCode.STORAGE_ERROR: ("StorageError", "Failed to store the message"),
}


def error_entry(
    code: SlashCode,
    details: str | None,
    *,
    property_name: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """One item of SLASH's ``errors`` list."""
    name, default = _TEXTS[code]
    return {
        "errorCode": int(code),
        "propertyName": property_name,
        "errorMessage": f"Error: {name} | {description or default}",
        "errorDetails": details,
    }


class SlashError(Exception):
    """A refusal, answered ``{"delivered": false, "errors": [...]}`` with ``status``."""

    def __init__(
        self,
        code: SlashCode,
        status: int,
        details: str,
        *,
        property_name: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{int(code)}: {details}")
        self.code = code
        self.status = status
        self.details = details
        self.headers = headers or {}
        self.errors = errors or [error_entry(code, details, property_name=property_name)]

    def body(self) -> dict[str, Any]:
        return {"delivered": False, "errors": self.errors}


def as_guid(correlation_id: str) -> str:
    """``X-Correlation-ID`` as FHI's client reads it: a GUID (it parses the header as a Guid
    and fails without one). A caller's id that is not one is mapped to a GUID derived from it,
    so the two can still be matched in the logs."""
    try:
        return str(uuid.UUID(correlation_id))
    except ValueError:
        return str(uuid.uuid5(_CORRELATION_NAMESPACE, correlation_id))


def item_errors(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The 2008 entries for the errors of each rejected item (see :func:`finding_errors`)."""
    return finding_errors(
        f for item in items if item.get("status") == "rejected" for f in item.get("findings") or []
    )


def finding_errors(findings: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A 2008 entry for each error finding (at most ``MAX_FINDINGS``, then one entry saying how
    many more): ``propertyName`` is the finding's JSON pointer, the details its rule id and
    Norwegian text, the message its English text."""
    errors = [f for f in findings if f.get("severity") == "error"]
    entries = [
        error_entry(
            SlashCode.SCHEMA_VALIDATION_FAILED,
            f"{f.get('rule_id')}: {f.get('message_nb')}",
            property_name=f.get("path"),
            description=str(f.get("message_en")),
        )
        for f in errors[:MAX_FINDINGS]
    ]
    if len(errors) > MAX_FINDINGS:
        entries.append(
            error_entry(
                SlashCode.SCHEMA_VALIDATION_FAILED,
                f"{len(errors) - MAX_FINDINGS} more findings; POST the message to "
                "/v1/messages/{type}/{version}?dry_run=true to see them all.",
            )
        )
    return entries


def from_problem(problem: Problem) -> SlashError:
    """The pipeline's refusal (see :mod:`receiver.problems`) in SLASH's terms."""
    details = problem.detail or problem.title
    if problem.code == "unit_mismatch":
        return SlashError(SlashCode.ORGANIZATION_NOT_ALLOWED, 403, details)
    if problem.code == "invalid_message":
        errors = finding_errors(problem.extra.get("findings", []))
        return SlashError(SlashCode.SCHEMA_VALIDATION_FAILED, 400, details, errors=errors or None)
    if problem.code == "rejected_atomic":  # the deployment refuses messages with rejected items
        receipt = problem.extra.get("receipt") or {}
        return SlashError(
            SlashCode.SCHEMA_VALIDATION_FAILED,
            400,
            f"{details} Correct the rejected items and send the whole message again.",
            errors=item_errors(receipt.get("items") or []) or None,
        )
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
