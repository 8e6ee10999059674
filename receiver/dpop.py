"""DPoP (RFC 9449): proof-of-possession for access tokens.

A request carries ``Authorization: DPoP <token>`` and a ``DPoP`` header holding a proof: a JWT
signed by the client's key, with ``typ=dpop+jwt``, the public key in its ``jwk`` header, and
claims ``htm`` (the HTTP method), ``htu`` (the URL without query and fragment), ``iat`` (recent),
``jti`` (never seen before) and ``ath`` (base64url SHA-256 of the access token). The token is
bound to that key by its ``cnf.jkt`` claim, the key's RFC 7638 thumbprint.

Algorithms and key sizes are :class:`receiver.jose.JosePolicy`'s. Each refusal names its cause:
a header too large for any allowed key, an algorithm or key not accepted, a bad signature, or a
proof that is valid but not for this request (too old, another method, URL, token or key, or
already used; SLASH answers these 2005 and the others 2004).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, RSAKey

from receiver.jose import JosePolicy, UnsupportedKey


class DpopError(Exception):
    """The proof is missing, malformed, or does not match the request or the token.
    ``mismatch``: a valid proof, but not for this request, this token or this moment."""

    def __init__(self, reason: str, *, mismatch: bool = False) -> None:
        super().__init__(reason)
        self.mismatch = mismatch


def ath_of(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def normalise_htu(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, "", ""))


class ReplayCache:
    """The ``jti`` values seen within the proof lifetime (in memory: one process)."""

    def __init__(self, ttl_seconds: float, max_entries: int = 100_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, jti: str, now: float) -> bool:
        with self._lock:
            while self._seen and (
                next(iter(self._seen.values())) < now - self._ttl or len(self._seen) > self._max
            ):
                self._seen.popitem(last=False)
            if jti in self._seen:
                return False
            self._seen[jti] = now
            return True


@dataclass(frozen=True, slots=True)
class DpopProof:
    claims: dict[str, Any]
    jkt: str  # RFC 7638 thumbprint of the proof's key


class DpopVerifier:
    def __init__(
        self,
        *,
        policy: JosePolicy | None = None,
        max_age_seconds: float = 60.0,
        clock_skew_seconds: float = 5.0,
    ) -> None:
        self.policy = policy or JosePolicy.default()
        self._registry = self.policy.registry()
        self._max_age = max_age_seconds
        self._skew = clock_skew_seconds
        self._replays = ReplayCache(max_age_seconds + clock_skew_seconds)

    def verify(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str | None,
        expected_jkt: str | None,
    ) -> DpopProof:
        segment = proof.split(".", 1)[0]
        if len(segment) > self.policy.max_header_bytes:
            raise DpopError(
                f"the DPoP proof's header is too large ({len(segment)} bytes; "
                f"at most {self.policy.max_header_bytes})"
            )
        try:
            header = orjson.loads(base64.urlsafe_b64decode(_pad(segment)))
        except (ValueError, IndexError) as exc:
            raise DpopError("the DPoP proof is not a JWS") from exc
        if not isinstance(header, dict) or header.get("typ") != "dpop+jwt":
            raise DpopError("the DPoP proof must have typ dpop+jwt")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.policy.algorithms:
            raise DpopError(
                f"the DPoP proof's algorithm {str(alg)[:20]!r} is not accepted "
                f"({' '.join(self.policy.algorithms)})"
            )
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or "d" in jwk or jwk.get("kty") not in ("EC", "RSA"):
            raise DpopError("the DPoP proof must carry a public EC or RSA jwk")
        try:
            self.policy.check_jwk(jwk, alg)
        except UnsupportedKey as exc:
            raise DpopError(f"the DPoP proof's key is not accepted: {exc}") from exc
        try:
            key: ECKey | RSAKey = (ECKey if jwk["kty"] == "EC" else RSAKey).import_key(jwk)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise DpopError("the DPoP proof's jwk is not a valid public key") from exc
        try:
            verified = jws.deserialize_compact(
                proof, key, algorithms=[alg], registry=self._registry
            )
        except BadSignatureError as exc:
            raise DpopError("the DPoP proof's signature does not verify") from exc
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise DpopError(f"the DPoP proof is malformed ({type(exc).__name__})") from exc
        try:
            claims = orjson.loads(verified.payload)
        except ValueError as exc:
            raise DpopError("the DPoP proof's claims are not JSON") from exc
        if not isinstance(claims, dict):
            raise DpopError("the DPoP proof has no claims")
        now = time.time()
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or not (
            now - self._max_age - self._skew <= iat <= now + self._skew
        ):
            raise DpopError("the DPoP proof is too old or from the future", mismatch=True)
        if claims.get("htm") != method.upper():
            raise DpopError("the DPoP proof is for another HTTP method", mismatch=True)
        if normalise_htu(str(claims.get("htu", ""))) != normalise_htu(url):
            raise DpopError("the DPoP proof is for another URL", mismatch=True)
        if access_token is not None and claims.get("ath") != ath_of(access_token):
            raise DpopError("the DPoP proof is for another access token", mismatch=True)
        jkt = key.thumbprint()
        if expected_jkt is not None and jkt != expected_jkt:
            raise DpopError("the access token is bound to another key", mismatch=True)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or not self._replays.first_time(jti, now):
            raise DpopError("the DPoP proof was already used", mismatch=True)
        return DpopProof(claims, jkt)


def _pad(text: str) -> str:
    return text + "=" * (-len(text) % 4)
