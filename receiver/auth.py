"""Access tokens: verification against a key set, and the embedded development issuer.

Tokens are JWTs shaped like HelseID's: ``iss``, ``aud``, ``exp``, ``scope`` entries in the form
``<audience>/<name>`` mapped to ``intake:<name>``, and the reporting unit in the organisation
claims (``orgnr_child`` wins over ``orgnr_parent``; ``orgnr_supplier`` names the vendor).
The dev issuer mints tokens of exactly that shape with its own key pair, so development runs the
production verification code.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jwt import JWTClaimsRegistry

from intake.files import create_once
from intake.settings import Settings

ALLOWED_ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
]
ALLOWED_TYPES = frozenset({"at+jwt", "jwt"})
CLAIM_PREFIX = "helseid://claims/client/claims/"
CLAIM_ORGNR_PARENT = CLAIM_PREFIX + "orgnr_parent"
CLAIM_ORGNR_CHILD = CLAIM_PREFIX + "orgnr_child"
CLAIM_ORGNR_SUPPLIER = CLAIM_PREFIX + "orgnr_supplier"
SCOPES = ("report", "review", "state", "admin")


class AuthError(Exception):
    """No acceptable token: answered 401 without saying which check failed."""


@dataclass(frozen=True, slots=True)
class Principal:
    unit: str
    supplier: str | None
    client_id: str | None
    scopes: frozenset[str]
    bound_jkt: str | None = None  # cnf.jkt: the DPoP key the token is bound to


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


class TokenVerifier:
    def __init__(self, keys: KeySet, *, issuer: str, audience: str, leeway: int) -> None:
        self._keys = keys
        self._audience = audience
        self._claims = JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )

    def verify(self, token: str) -> Principal:
        try:
            decoded = jwt.decode(token, self._keys, algorithms=ALLOWED_ALGORITHMS)
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
        if not isinstance(unit, str) or not (len(unit) == 9 and unit.isdigit()):
            raise AuthError("token names no reporting unit")
        supplier = claims.get(CLAIM_ORGNR_SUPPLIER)
        client_id = claims.get("client_id")
        cnf = claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        return Principal(
            unit=unit,
            supplier=supplier if isinstance(supplier, str) else None,
            client_id=client_id if isinstance(client_id, str) else None,
            scopes=_scopes(claims, self._audience),
            bound_jkt=jkt if isinstance(jkt, str) else None,
        )


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
    ) -> str:
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
            CLAIM_ORGNR_PARENT: orgnr,
        }
        if supplier:
            claims[CLAIM_ORGNR_SUPPLIER] = supplier
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


def verifier_for(settings: Settings) -> TokenVerifier:
    if settings.uses_dev_issuer:
        keys = DevIssuer.load_or_create(settings).key_set()
    else:
        assert settings.auth_jwks_file is not None
        keys = KeySet.import_key_set(orjson.loads(settings.auth_jwks_file.read_bytes()))
    return TokenVerifier(
        keys,
        issuer=settings.issuer,
        audience=settings.auth_audience,
        leeway=settings.token_leeway_seconds,
    )
