"""Access tokens: verification against a key set, and the embedded development issuer.

Tokens are JWTs shaped like HelseID's: ``iss``, ``aud``, ``exp``, ``scope`` entries in the form
``<audience>/<name>`` mapped to ``intake:<name>``, and the reporting unit in the organisation
claims (``orgnr_child`` wins over ``orgnr_parent``; ``orgnr_supplier`` names the vendor).
The dev issuer mints tokens of exactly that shape with its own key pair, so development runs the
production verification code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jwt import JWTClaimsRegistry

from receiver.jose import JosePolicy
from wiring.files import create_once
from wiring.settings import Settings

log = logging.getLogger(__name__)

ALLOWED_TYPES = frozenset({"at+jwt", "jwt"})
CLAIM_PREFIX = "helseid://claims/client/claims/"
CLAIM_ORGNR_PARENT = CLAIM_PREFIX + "orgnr_parent"
CLAIM_ORGNR_CHILD = CLAIM_PREFIX + "orgnr_child"
CLAIM_ORGNR_SUPPLIER = CLAIM_PREFIX + "orgnr_supplier"
SCOPES = ("report", "review", "state", "admin", "identity", "insight")


class AuthError(Exception):
    """No acceptable token: answered 401 without saying which check failed."""


@dataclass(frozen=True, slots=True)
class Principal:
    unit: str
    supplier: str | None
    client_id: str | None
    scopes: frozenset[str]
    bound_jkt: str | None = None  # cnf.jkt: the DPoP key the token is bound to
    # Who acts, for review notes and the access log: the person's name (``name``) or subject
    # (``sub``), else the client.
    actor: str | None = None
    # A citizen's own person number (the ``pid`` claim ID-porten and HelseID give), for insight
    # into their own data only; such a token names no reporting unit (``unit`` is "").
    pid: str | None = None


def _scopes(claims: dict[str, Any], audience: str) -> frozenset[str]:
    raw = claims.get("scope", "")
    entries = raw.split() if isinstance(raw, str) else [s for s in raw if isinstance(s, str)]
    out = set()
    for entry in entries:
        prefix, _, name = entry.rpartition("/")
        if prefix == audience and name in SCOPES:
            out.add(f"intake:{name}")
    return frozenset(out)


def _unit_from_authorization_details(details: Any) -> str | None:
    """HelseID's structured form: an organisation ``NO:ORGNR:<parent>[:<child>]``; the child
    wins when present."""
    entries = details if isinstance(details, list) else [details]
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        org = (
            entry.get("value", {}).get("orgnr_parent")
            if isinstance(entry.get("value"), dict)
            else None
        )
        identifier = entry.get("organization_number") or entry.get("identifier") or org
        if isinstance(identifier, str) and identifier.startswith("NO:ORGNR:"):
            parts = identifier.split(":")[2:]
            if parts and all(len(p) == 9 and p.isdigit() for p in parts):
                return parts[-1]
    return None


def header_kid(token: str) -> str | None:
    try:
        header = orjson.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    except (ValueError, IndexError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


# Verified tokens are remembered by their SHA-256: a client sends the same token with every
# request until it expires, and checking its signature and claims again was 0.1–0.2 ms, about a
# tenth of the CPU of a one-item message. An entry holds until the token's exp (at most
# VERIFIED_TTL_SECONDS) and only while the key set it was checked against is the current one, so
# a key withdrawn from the JWKS stops admitting its tokens at the next refresh.
VERIFIED_TTL_SECONDS = 60
VERIFIED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    keys: KeySet
    until: float


class TokenVerifier:
    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        leeway: int,
        jwks: JwksCache | None = None,
        policy: JosePolicy | None = None,
    ) -> None:
        self._policy = policy or JosePolicy.default()
        self._registry = self._policy.registry()
        self._keys = keys
        self._jwks = jwks
        self._verified: dict[bytes, _Verified] = {}
        self._audience = audience
        self._claims = JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()

    async def verify_async(self, token: str) -> Principal:
        """As :meth:`verify`, first refreshing a JWKS cache that lacks the token's key id, and
        remembering tokens already verified (see ``VERIFIED_TTL_SECONDS``)."""
        if self._jwks is None:
            keys = self._keys
        else:
            keys = await self._jwks.keys_for(header_kid(token))
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        hit = self._verified.get(digest)
        if hit is not None and hit.keys is keys and now < hit.until:
            return hit.principal
        principal, expires = self._verify(token, keys)
        if len(self._verified) >= VERIFIED_MAX:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[digest] = _Verified(
            principal, keys, min(expires, now + VERIFIED_TTL_SECONDS)
        )
        return principal

    def verify(self, token: str, keys: KeySet | None = None) -> Principal:
        if keys is None:
            keys = self._jwks.current if self._jwks is not None else self._keys
        return self._verify(token, keys)[0]

    def _verify(self, token: str, keys: KeySet) -> tuple[Principal, float]:
        """The token's principal and its expiry (epoch seconds), or AuthError."""
        try:
            decoded = jwt.decode(
                token, keys, algorithms=self._policy.algorithms, registry=self._registry
            )
            if str(decoded.header.get("typ", "")).lower() not in ALLOWED_TYPES:
                raise AuthError("token type not accepted")
            self._claims.validate(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise AuthError("token rejected") from exc
        claims = decoded.claims
        unit = (
            claims.get(CLAIM_ORGNR_CHILD)
            or claims.get(CLAIM_ORGNR_PARENT)
            or _unit_from_authorization_details(claims.get("authorization_details"))
        )
        pid = claims.get("pid")
        citizen = isinstance(pid, str) and len(pid) == 11 and pid.isdigit()
        if citizen and unit is None:
            unit = ""  # a citizen, not a reporting unit
        elif not isinstance(unit, str) or not (len(unit) == 9 and unit.isdigit()):
            raise AuthError("token names no reporting unit")
        supplier = claims.get(CLAIM_ORGNR_SUPPLIER)
        client_id = claims.get("client_id")
        cnf = claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        principal = Principal(
            unit=unit,
            supplier=supplier if isinstance(supplier, str) else None,
            client_id=client_id if isinstance(client_id, str) else None,
            scopes=_scopes(claims, self._audience),
            bound_jkt=jkt if isinstance(jkt, str) else None,
            actor=_actor(claims),
            pid=pid if citizen else None,
        )
        return principal, float(claims["exp"])


def _actor(claims: dict[str, Any]) -> str | None:
    for name in ("name", "sub", "client_id"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    return None


class DevIssuer:
    """The local development issuer. Its private key lives in ``<data dir>/dev-issuer/``."""

    def __init__(self, key: ECKey, *, issuer: str, audience: str) -> None:
        self._key = key
        self.issuer = issuer
        self.audience = audience

    @classmethod
    def load_or_create(cls, settings: Settings) -> DevIssuer:
        if not settings.uses_dev_issuer:
            raise RuntimeError("the dev issuer is disabled because a real issuer is configured")
        path = settings.data_dir / "dev-issuer" / "signing-key.json"
        return cls(
            _load_or_create_key(path), issuer=settings.dev_issuer, audience=settings.auth_audience
        )

    def key_set(self) -> KeySet:
        return KeySet.import_key_set({"keys": [self._key.as_dict(private=False)]})

    def mint(
        self,
        orgnr: str,
        *,
        scopes: list[str],
        supplier: str | None = None,
        lifetime_seconds: int = 3600,
        dpop_jkt: str | None = None,
        subject: str | None = None,
        pid: str | None = None,
    ) -> str:
        """A token for the unit ``orgnr`` (empty for a citizen's token, which names ``pid``)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
            "jti": str(uuid.uuid4()),
            "client_id": "dev-client",
            "scope": " ".join(f"{self.audience}/{s.removeprefix('intake:')}" for s in scopes),
        }
        if orgnr:
            claims[CLAIM_ORGNR_PARENT] = orgnr
        if pid:
            claims["pid"] = pid
        if supplier:
            claims[CLAIM_ORGNR_SUPPLIER] = supplier
        if subject:
            claims["sub"] = subject
        if dpop_jkt:
            claims["cnf"] = {"jkt": dpop_jkt}
        header = {"alg": "ES256", "typ": "at+jwt", "kid": self._key.kid}
        return jwt.encode(header, claims, self._key)


def _load_or_create_key(path: Path) -> ECKey:
    if not path.exists():
        key = ECKey.generate_key("P-256", private=True, parameters={"use": "sig"}, auto_kid=True)
        create_once(path, orjson.dumps(key.as_dict(private=True)))
    imported = ECKey.import_key(orjson.loads(path.read_bytes()))
    assert isinstance(imported, ECKey)
    return imported


class JwksCache:
    """An issuer's JWKS fetched over HTTPS and cached. Rotation: a token naming an unknown key id
    refreshes the cache at once, but at most every ``min_refetch_seconds`` (so garbage key ids
    cannot make us hammer the issuer)."""

    def __init__(
        self,
        url: str,
        *,
        refresh_seconds: float,
        min_refetch_seconds: float = 30.0,
        client: httpx.AsyncClient | None = None,
        policy: JosePolicy | None = None,
    ) -> None:
        self._policy = policy or JosePolicy.default()
        self._url = url
        self._refresh = refresh_seconds
        self._min_refetch = min_refetch_seconds
        self._client = client or httpx.AsyncClient(timeout=5.0)
        self._keys = KeySet([])
        self._kids: set[str] = set()
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def current(self) -> KeySet:
        return self._keys

    async def aclose(self) -> None:
        await self._client.aclose()

    async def keys_for(self, kid: str | None) -> KeySet:
        now = time.monotonic()
        stale = now - self._fetched_at > self._refresh
        unknown = kid is not None and kid not in self._kids
        if stale or (unknown and now - self._fetched_at > self._min_refetch):
            async with self._lock:
                if time.monotonic() - self._fetched_at > min(self._min_refetch, self._refresh):
                    await self._fetch()
        return self._keys

    async def _fetch(self) -> None:
        try:
            response = await self._client.get(self._url)
            response.raise_for_status()
            document = response.json()
            self._keys = accepted_keys(self._policy, document, self._url)
            self._kids = {k.get("kid") for k in document.get("keys", []) if k.get("kid")}
        except (httpx.HTTPError, ValueError, KeyError, TypeError, JoseError) as exc:
            # Keep verifying with the keys we have; the issuer may be briefly unreachable.
            log.warning("JWKS from %s could not be fetched: %s", self._url, type(exc).__name__)
        self._fetched_at = time.monotonic()


def accepted_keys(policy: JosePolicy, document: Any, source: str) -> KeySet:
    """The keys of an issuer's JWKS that the allow-list accepts; the others are logged and not
    used."""
    kept, refused = policy.accepted_jwks(document)
    if refused:
        log.warning(
            "keys from %s not used (outside the allow-list): %s", source, "; ".join(refused)
        )
    return kept


def verifier_for(settings: Settings) -> TokenVerifier:
    policy = JosePolicy.from_settings(settings)
    jwks: JwksCache | None = None
    if settings.uses_dev_issuer:
        keys = DevIssuer.load_or_create(settings).key_set()
    elif settings.auth_jwks_url is not None:
        jwks = JwksCache(
            settings.auth_jwks_url,
            refresh_seconds=settings.auth_jwks_refresh_seconds,
            policy=policy,
        )
        keys = jwks.current
    else:
        assert settings.auth_jwks_file is not None
        document = orjson.loads(settings.auth_jwks_file.read_bytes())
        keys = accepted_keys(policy, document, str(settings.auth_jwks_file))
    return TokenVerifier(
        keys,
        issuer=settings.issuer,
        audience=settings.auth_audience,
        leeway=settings.token_leeway_seconds,
        jwks=jwks,
        policy=policy,
    )
