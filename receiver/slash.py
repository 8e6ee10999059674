"""SLASH compatibility: the protocol of FHI's "SLASH – API Mottak", which EPJ systems already
speak to report to KPR, so that they can send to this receiver unchanged.

The protocol (FHI's published description and its .NET client, ``Fhi.Slash.Public``):

* ``GET /keys`` lists the receiver's RSA public keys, newest expiry first (FHI's client takes the
  first one). Each entry has FHI's fields ``id``, ``expirationDate`` and ``publicKey`` (SPKI PEM)
  and is also a JWK: ``kid`` (= ``id``, the RFC 7638 thumbprint), ``kty``/``n``/``e``,
  ``use: "enc"``, ``alg: "RSA-OAEP-256"`` and ``exp`` (unix seconds).
* ``POST /message`` carries ``base64(IV(16) || AES-256-CBC(PKCS#7(plaintext)))`` as a
  ``text/plain`` body; the plaintext is the message JSON in UTF-8. ``Authorization: DPoP
  <HelseID token>`` and a ``DPoP`` proof whose extra claims are ``msg_type``, ``msg_version``,
  ``msg_hash`` (base64 or base64url SHA-256 of the plaintext), ``enc_sym_key`` (the 32-byte AES
  key wrapped with RSA-OAEP-SHA256, base64 or base64url) and ``enc_key_id`` (the ``kid``).
  Headers ``x-vendor-name``, ``x-software-name``, ``x-software-version``,
  ``x-export-software-version`` and ``x-data-extraction-date`` (dd.MM.yyyy) are required.
* The answer is ``{"delivered": bool, "errors": [{errorCode, propertyName, errorMessage,
  errorDetails}]}``. Delivered messages also name our receipt (``receiptId``, ``receiptStatus``,
  ``receiptUrl``, ``X-Correlation-ID`` and ``Location``), which ``GET /v1/receipts/{id}`` and the
  receipt feed follow to the state store. Items rejected by validation do not make a message
  undelivered (the rest is stored): one ``errors`` entry (2008) then points to the receipt.

Error codes are FHI's own (their README's "Oversikt over feilmeldinger"); ``errorMessage`` is
``"Error: <name> | <description>"`` like theirs, ``errorDetails`` says what exactly failed.
FHI answers 401 for authentication and 400 for everything else; we keep that and use 403, 413,
415 and 503 where they say more (a SLASH client stops on 4xx and retries on 5xx):

code  status     FHI name: raised here when
----  ---------  ---------------------------------------------------------------------------
1001  401 / 400  HttpHeaderMissing: no ``Authorization`` or ``DPoP`` header (401); an
                 ``x-*`` header is missing (400)
1002  401 / 400  HttpHeaderValidation: scheme not ``DPoP``, token invalid or expired (401);
      415        an ``x-*`` value too long or the date not dd.MM.yyyy (400); Content-Type
                 not text/plain (415)
1003  400        InvalidMessageTypeVersion: ``msg_type``/``msg_version`` missing or malformed
1004  400        InvalidKeyId: ``enc_key_id`` missing or not one of our keys
1005  400        InvalidDigest: ``msg_hash`` missing or not base64 of 32 bytes
1006  400        PayloadHashMismatch: the decrypted payload's SHA-256 is not ``msg_hash`` (also
                 when its padding is wrong: see below)
1007  400        ExpiredKey: ``enc_key_id`` names a key of ours that has expired
1008  400        DecryptionErrorForAsymmetricalKey: ``enc_sym_key`` missing, not base64, not
                 RSA-OAEP-SHA256 for that key, or not 32 bytes
1009  400        DecryptionErrorForSymmetricalKey: body empty, not base64, or not an IV
                 followed by whole AES blocks
2001  403        ShouldNotReceiveMessageForGivenOrganizationAndMessageType: the token lacks
                 ``intake:report``, or a unit block names another organisation number
2002  401        MissingOrganizationNumberClaimFromHelseIdToken: the token names no unit
2003  401        MissingSignatureClaimFromHelseIdToken: the token is not DPoP-bound (no
                 ``cnf.jkt``)
2004  401        BadSignatureClaimFromHelseIdToken: the DPoP proof is malformed or its
                 signature does not verify
2005  401        HelseIdSignatureDoesNotMatchHeaderValues: the proof is for another method,
                 URL, token or key, too old, or replayed (``jti`` seen before)
2006  400        SchemaNotFound: no published model for the type and version, or it is retired
2007  400        InvalidJsonMessage: the plaintext is not UTF-8 JSON
2008  400        SchemaValidationFailed: errors outside the items, or no items (not
                 delivered); also the pointer to the receipt when items were rejected
                 (delivered: true)
2009  413        PayloadSizeLimitExceeded: body or plaintext over ``max_body_bytes`` (15 MB),
                 or more items than ``max_items``
2010  503 / 409  StorageError: the event log is unavailable, or the unit is rate limited (503
                 with ``Retry-After``: retry the same message); ``msg_hash`` reused for other
                 content (409)

Security notes. AES-CBC without a MAC is what SLASH defines; the signed ``msg_hash`` is its only
integrity check. A bad PKCS#7 padding is therefore answered exactly like a hash mismatch (1006):
telling them apart would be a padding oracle that lets any authenticated client decrypt a captured
message. Expired private keys are not kept in memory; their ids are remembered so that clients
get 1007 rather than 1004.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from joserfc.jwk import RSAKey

from wiring.files import create_once
from wiring.settings import Settings

log = logging.getLogger(__name__)

IV_BYTES = 16
AES_KEY_BYTES = 32
BLOCK_BYTES = 16
KEY_ALGORITHM = "RSA-OAEP-256"


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


# --- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlashKey:
    kid: str
    not_before: int  # published from (unix seconds)
    expires: int  # published and decrypting until (unix seconds)
    private_key: rsa.RSAPrivateKey | None  # None once expired: its id is remembered, not it

    @classmethod
    def from_private(
        cls, private_key: rsa.RSAPrivateKey, *, not_before: int, expires: int
    ) -> SlashKey:
        return cls(_thumbprint(private_key), not_before, expires, private_key)

    def published(self) -> dict[str, Any]:
        """The ``/keys`` entry: FHI's fields and a JWK."""
        assert self.private_key is not None
        public = self.private_key.public_key()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        jwk = RSAKey.import_key(pem).as_dict(private=False)
        return {
            "id": self.kid,
            "expirationDate": datetime.fromtimestamp(self.expires, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "publicKey": pem,
            "kid": self.kid,
            "kty": "RSA",
            "n": jwk["n"],
            "e": jwk["e"],
            "use": "enc",
            "alg": KEY_ALGORITHM,
            "exp": self.expires,
        }


def _thumbprint(private_key: rsa.RSAPrivateKey) -> str:
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return RSAKey.import_key(pem).thumbprint()


def _load_private_pem(data: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("a SLASH key must be an RSA private key")
    if key.key_size < 2048:
        raise ValueError("a SLASH key must have at least 2048 bits")
    return key


class UnknownKeyError(Exception):
    """``enc_key_id`` names no key of ours."""


class ExpiredKeyError(Exception):
    """``enc_key_id`` names a key of ours that has expired."""


class SlashKeyStore:
    """The receiver's encryption keys.

    Rotating keys live in ``directory``, one JSON file per key (``<not_before>.json`` holding the
    kid, validity and the private key as PKCS#8 PEM; written with :func:`create_once`, mode 0600).
    Validity windows sit on a fixed grid: key *g* is published from ``g * step`` to
    ``g * step + lifetime`` with ``step = lifetime - overlap``, so every replica sharing the
    directory derives the same file name at the same time and the first writer wins. At any moment
    one or two keys are published; a message to either decrypts.

    A static key (given by settings) is published until its expiry and never rotated.
    """

    def __init__(
        self,
        directory: Path | None,
        *,
        lifetime_seconds: int,
        overlap_seconds: int,
        key_bits: int = 3072,
        static_keys: Iterable[SlashKey] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dir = directory
        self._lifetime = lifetime_seconds
        self._step = lifetime_seconds - overlap_seconds
        self._bits = key_bits
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, SlashKey] = {k.kid: k for k in static_keys}
        self._generations: set[int] = set()  # not_before of rotating keys loaded
        if directory is None:
            if not self._keys:
                raise ValueError("a SLASH key store needs a key directory or a key")
            return
        if not 0 < overlap_seconds < lifetime_seconds:
            raise ValueError("the SLASH key overlap must be positive and shorter than a lifetime")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            self._scan()  # this period's key is created when first asked for (see refresh)

    @classmethod
    def from_settings(cls, settings: Settings) -> SlashKeyStore:
        common: dict[str, Any] = {
            "lifetime_seconds": settings.slash_key_lifetime_seconds,
            "overlap_seconds": settings.slash_key_overlap_seconds,
            "key_bits": settings.slash_key_bits,
        }
        if settings.slash_key_file is None:
            return cls(settings.data_dir / "slash-keys", **common)
        if settings.slash_key_expires is None:
            raise ValueError("INTAKE_SLASH_KEY_EXPIRES is required with INTAKE_SLASH_KEY_FILE")
        password = settings.slash_key_password
        private = _load_private_pem(
            settings.slash_key_file.read_bytes(),
            password.get_secret_value().encode() if password is not None else None,
        )
        day = settings.slash_key_expires
        expires = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        if expires <= time.time():
            log.error("the SLASH key in INTAKE_SLASH_KEY_FILE expired on %s", day.isoformat())
        key = SlashKey.from_private(private, not_before=0, expires=expires)
        return cls(None, static_keys=[key], **common)

    # -- reading

    def published(self) -> list[SlashKey]:
        """The keys clients may encrypt to now, the one that expires last first."""
        now = self._clock()
        with self._lock:
            if self._dir is not None:
                self._ensure(self._current_generation())
            self._forget_expired(now)
            live = [
                k
                for k in self._keys.values()
                if k.private_key is not None and k.not_before <= now < k.expires
            ]
        return sorted(live, key=lambda k: (k.expires, k.not_before), reverse=True)

    def key_for(self, kid: str) -> SlashKey:
        """The key named by ``enc_key_id``; raises :class:`UnknownKeyError` or
        :class:`ExpiredKeyError`."""
        now = self._clock()
        with self._lock:
            self._forget_expired(now)
            key = self._keys.get(kid)
            if key is None and self._dir is not None:
                self._scan()  # another replica may have created it
                key = self._keys.get(kid)
            if key is None:
                raise UnknownKeyError(kid)
            if key.expires <= now or key.private_key is None:
                raise ExpiredKeyError(kid)
            return key

    async def refresh(self) -> None:
        """Create this period's key if it is missing, off the event loop (RSA key generation
        takes a while)."""
        if self._dir is None or self._current_generation() in self._generations:
            return
        await asyncio.to_thread(self._refresh_locked)

    def cache_seconds(self) -> int:
        """How long a client may cache ``/keys``: well inside the overlap."""
        return max(0, min(3600, (self._lifetime - self._step) // 4))

    # -- internals (called with the lock held)

    def _refresh_locked(self) -> None:
        with self._lock:
            self._ensure(self._current_generation())

    def _current_generation(self) -> int:
        return int(self._clock()) // self._step * self._step

    def _ensure(self, not_before: int) -> None:
        if not_before in self._generations:
            return
        assert self._dir is not None
        path = self._dir / f"{not_before}.json"
        if not path.exists():
            private = rsa.generate_private_key(public_exponent=65537, key_size=self._bits)
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            document = {
                "kid": _thumbprint(private),
                "not_before": not_before,
                "expires": not_before + self._lifetime,
                "alg": KEY_ALGORITHM,
                "private_key_pem": pem.decode(),
            }
            create_once(path, orjson.dumps(document))  # a concurrent writer may win: read back
            log.info("created SLASH key %s, valid until %s", document["kid"], document["expires"])
        self._load(path)

    def _scan(self) -> None:
        assert self._dir is not None
        if not self._dir.is_dir():
            return
        for path in sorted(self._dir.glob("*.json")):
            self._load(path)

    def _load(self, path: Path) -> None:
        document = orjson.loads(path.read_bytes())
        kid = str(document["kid"])
        not_before = int(document["not_before"])
        expires = int(document["expires"])
        self._generations.add(not_before)
        if kid in self._keys:
            return
        if expires <= self._clock():
            self._keys[kid] = SlashKey(kid, not_before, expires, None)
            return
        private = _load_private_pem(str(document["private_key_pem"]).encode())
        key = SlashKey.from_private(private, not_before=not_before, expires=expires)
        if key.kid != kid:
            raise ValueError(f"{path}: the kid does not match the key")
        self._keys[kid] = key

    def _forget_expired(self, now: float) -> None:
        for kid, key in list(self._keys.items()):
            if key.private_key is not None and key.expires <= now:
                self._keys[kid] = replace(key, private_key=None)


# --- crypto ----------------------------------------------------------------------------------

_URLSAFE = bytes.maketrans(b"-_", b"+/")
_WHITESPACE = b" \t\r\n"


def b64decode_lenient(text: str | bytes) -> bytes:
    """Standard or URL-safe base64, padded or not (FHI's client sends base64url for the proof's
    claims and standard base64 for the body). Raises ``ValueError``."""
    data = text.encode("ascii") if isinstance(text, str) else text
    data = data.translate(_URLSAFE, _WHITESPACE)
    data += b"=" * (-len(data) % 4)
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_body(body: bytes) -> bytes:
    """The body's bytes: ``IV || ciphertext``. Raises :class:`SlashError` (1009)."""
    text = body.strip(_WHITESPACE)
    if len(text) >= 2 and text[:1] == b'"' and text[-1:] == b'"':  # sent as a JSON string
        text = text[1:-1]
    if not text:
        raise _symmetric("The body is empty; send the encrypted message as base64 text.")
    try:
        data = b64decode_lenient(text)
    except (ValueError, UnicodeEncodeError) as exc:
        raise _symmetric("The body is not base64.") from exc
    if len(data) < IV_BYTES + BLOCK_BYTES or len(data) % BLOCK_BYTES:
        raise _symmetric(
            "The body is not a 16-byte IV followed by whole AES blocks "
            f"({len(data)} bytes after base64)."
        )
    return data


def unwrap_key(key: SlashKey, enc_sym_key: str) -> bytes:
    """The AES key from ``enc_sym_key`` (RSA-OAEP with SHA-256). Raises :class:`SlashError`
    (1008)."""
    assert key.private_key is not None
    try:
        wrapped = b64decode_lenient(enc_sym_key)
    except (ValueError, UnicodeEncodeError) as exc:
        raise _asymmetric("enc_sym_key is not base64.") from exc
    try:
        aes_key = key.private_key.decrypt(
            wrapped,
            OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
    except ValueError as exc:
        raise _asymmetric(
            f"enc_sym_key does not decrypt with key {key.kid} (RSA-OAEP, SHA-256)."
        ) from exc
    if len(aes_key) != AES_KEY_BYTES:
        raise _asymmetric(f"The symmetric key must be {AES_KEY_BYTES} bytes (AES-256).")
    return aes_key


def decrypt_and_verify(aes_key: bytes, data: bytes, digest: bytes) -> bytes:
    """The plaintext of ``IV || AES-256-CBC``, checked against ``digest`` (SHA-256).

    A wrong padding and a wrong digest give the same error after the same work, so the answer
    reveals nothing about the padding (no padding oracle). Raises :class:`SlashError` (1006)."""
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(data[:IV_BYTES])).decryptor()
    padded = decryptor.update(data[IV_BYTES:]) + decryptor.finalize()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        plaintext = unpadder.update(padded) + unpadder.finalize()
        padding_ok = True
    except ValueError:
        plaintext = padded
        padding_ok = False
    matches = hmac.compare_digest(hashlib.sha256(plaintext).digest(), digest)
    if not (matches and padding_ok):
        raise SlashError(
            SlashCode.PAYLOAD_HASH_MISMATCH,
            400,
            "The decrypted payload does not match msg_hash: the body was changed, encrypted "
            "with another key than enc_sym_key, or msg_hash is not the SHA-256 of the message.",
            property_name="msg_hash",
        )
    return plaintext


def _symmetric(details: str) -> SlashError:
    return SlashError(SlashCode.DECRYPTION_ERROR_SYMMETRIC, 400, details)


def _asymmetric(details: str) -> SlashError:
    return SlashError(
        SlashCode.DECRYPTION_ERROR_ASYMMETRIC, 400, details, property_name="enc_sym_key"
    )
