"""A SLASH client written from FHI's published algorithm (the README of
folkehelseinstituttet/Fhi.Slash.Public and its .NET client's steps), not from this product's
code: ``cryptography`` for AES and RSA, PyJWT for the DPoP proof, httpx for HTTP.

The steps, as FHI's client takes them for each message:

1. ``GET /keys``; order by ``expirationDate``, newest first; take the first. ``id`` is read as a
   GUID (FHI's older client) and sent back as ``enc_key_id``; ``publicKey`` is SPKI PEM.
2. A random 32-byte AES key and 16-byte IV; AES-256-CBC with PKCS#7 over the UTF-8 message
   JSON; the body is standard base64 of IV || ciphertext, sent as ``text/plain``.
3. The AES key wrapped with RSA-OAEP-SHA256 (``enc_sym_key``, base64url without padding);
   ``msg_hash`` is base64url (no padding) of SHA-256 over the plaintext.
4. A DPoP proof (typ ``dpop+jwt``; RS256 for an RSA key, whose ``jwk`` holds kty, n, e, alg;
   ES256 for an EC key) with claims jti, htm, htu, iat, msg_type, msg_version (a string),
   msg_hash, enc_sym_key, enc_key_id, ath.
5. ``POST /message`` with ``Authorization: DPoP <token>``, the proof and the five ``x-*``
   headers; the answer is read as JSON (``delivered``, ``errors``) whatever the status, and
   ``X-Correlation-ID`` is parsed as a GUID.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.interop.peers import ClientKey, b64url, dpop_proof

VENDOR_HEADERS = {
    "x-vendor-name": "Journalleverandoren AS",
    "x-software-name": "Journal",
    "x-software-version": "24.1",
    "x-export-software-version": "3.0.9",
    "x-data-extraction-date": "31.12.2025",
}


@dataclass(frozen=True)
class PublicKeyInfo:
    id: uuid.UUID
    expiration: datetime
    public_key: rsa.RSAPublicKey


@dataclass(frozen=True)
class Envelope:
    """What one message becomes on the wire, before the proof is signed."""

    body: str
    claims: dict[str, str]


@dataclass(frozen=True)
class Answer:
    status: int
    delivered: bool
    errors: list[dict[str, Any]]
    correlation_id: uuid.UUID
    body: dict[str, Any]

    @property
    def codes(self) -> list[int]:
        return [int(e["errorCode"]) for e in self.errors]


@dataclass
class FhiClient:
    http: httpx.AsyncClient
    base_url: str
    key: ClientKey
    token: str
    headers: dict[str, str] = field(default_factory=lambda: dict(VENDOR_HEADERS))

    async def public_key(self) -> PublicKeyInfo:
        response = await self.http.get(f"{self.base_url}/keys")
        response.raise_for_status()
        entries = sorted(
            response.json(),
            key=lambda e: datetime.fromisoformat(e["expirationDate"].replace("Z", "+00:00")),
            reverse=True,
        )
        first = entries[0]
        public = serialization.load_pem_public_key(first["publicKey"].encode())
        assert isinstance(public, rsa.RSAPublicKey)
        return PublicKeyInfo(
            uuid.UUID(first["id"]),  # FHI's older client: Guid.Parse
            datetime.fromisoformat(first["expirationDate"].replace("Z", "+00:00")),
            public,
        )

    @staticmethod
    def envelope(
        plaintext: bytes, key: PublicKeyInfo, *, msg_type: str, msg_version: str
    ) -> Envelope:
        aes_key, iv = os.urandom(32), os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        wrapped = key.public_key.encrypt(
            aes_key,
            OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        return Envelope(
            base64.b64encode(iv + ciphertext).decode(),
            {
                "msg_type": msg_type,
                "msg_version": msg_version,
                "msg_hash": b64url(hashlib.sha256(plaintext).digest()),
                "enc_sym_key": b64url(wrapped),
                "enc_key_id": str(key.id),  # .NET's Guid.ToString(): lowercase, hyphens
            },
        )

    def proof(self, claims: dict[str, str], *, url: str | None = None) -> str:
        return dpop_proof(
            self.key,
            method="POST",
            url=url or f"{self.base_url}/message",
            access_token=self.token,
            extra=claims,
        )

    async def post(
        self,
        envelope: Envelope,
        *,
        proof: str | None = None,
        headers: dict[str, str | None] | None = None,
        body: str | None = None,
    ) -> Answer:
        sent: dict[str, str | None] = {
            "Authorization": f"DPoP {self.token}",
            "DPoP": proof if proof is not None else self.proof(envelope.claims),
            "Content-Type": "text/plain; charset=utf-8",
            **self.headers,
            **(headers or {}),
        }
        response = await self.http.post(
            f"{self.base_url}/message",
            content=envelope.body if body is None else body,
            headers={k: v for k, v in sent.items() if v is not None},
        )
        document = orjson.loads(response.content)  # FHI's client reads JSON whatever the status
        return Answer(
            response.status_code,
            bool(document["delivered"]),
            list(document["errors"]),
            uuid.UUID(response.headers["x-correlation-id"]),  # Guid.Parse, or the client fails
            document,
        )

    async def send(
        self, message: Any, *, msg_type: str = "HST_Avtale", msg_version: str = "1"
    ) -> Answer:
        plaintext = message if isinstance(message, bytes) else orjson.dumps(message)
        key = await self.public_key()
        return await self.post(
            self.envelope(plaintext, key, msg_type=msg_type, msg_version=msg_version)
        )
