"""JOSE as an independent client makes it: keys from ``cryptography``, JWTs signed by PyJWT,
JWK thumbprints computed here from RFC 7638 — nothing of the product's (joserfc) library.

An RFC 7638 thumbprint is written out by hand on purpose: it is what binds a token to a proof,
and a second implementation is the point of this suite.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.warnings import InsecureKeyLengthWarning

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class ClientKey:
    """A key pair and the algorithm it signs with, as a vendor's system would hold it."""

    alg: str
    private: PrivateKey

    @classmethod
    def generate(cls, alg: str, rsa_bits: int = 2048) -> ClientKey:
        if alg.startswith("ES"):
            return cls(alg, ec.generate_private_key(CURVES[alg]()))
        return cls(alg, rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits))

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            return dict(RSAAlgorithm.to_jwk(public, as_dict=True))
        return dict(ECAlgorithm.to_jwk(public, as_dict=True))

    def thumbprint(self) -> str:
        """RFC 7638: SHA-256 of the required members, in lexicographic order, no white space."""
        jwk = self.public_jwk()
        required = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
        canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"))
        return b64url(hashlib.sha256(canonical.encode()).digest())

    def sign(self, claims: dict[str, Any], headers: dict[str, Any]) -> str:
        with warnings.catch_warnings():  # the suite signs with weak keys on purpose
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(claims, self.private, algorithm=self.alg, headers=headers)


def dpop_proof(
    key: ClientKey,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    extra: dict[str, Any] | None = None,
    jwk: dict[str, Any] | None = None,
) -> str:
    """A DPoP proof (RFC 9449 §4.2) with ``extra`` claims (SLASH puts its message claims here)."""
    claims: dict[str, Any] = {
        "htm": method,
        "htu": url,
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        **(extra or {}),
    }
    if access_token is not None:
        claims["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
    return key.sign(claims, {"typ": "dpop+jwt", "jwk": jwk or key.public_jwk()})


@dataclass
class Issuer:
    """An OpenID provider's signing side, HelseID-shaped tokens: its keys and their JWKS."""

    issuer: str
    keys: dict[str, ClientKey]  # by kid

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            out.append({**key.public_jwk(), "kid": kid, "use": "sig", "alg": key.alg})
        return {"keys": out}

    def token(
        self, kid: str, *, unit: str, scopes: list[str], jkt: str | None, audience: str
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "client_id": "interop-client",
            "helseid://claims/client/claims/orgnr_parent": unit,
            "scope": [f"{audience}/{s}" for s in scopes],
        }
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        return self.keys[kid].sign(claims, {"typ": "at+jwt", "kid": kid})
