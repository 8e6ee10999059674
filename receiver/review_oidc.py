"""The review pages as an OpenID Connect relying party: authorization code flow with PKCE (S256)
against the configured provider (HelseID in production), for quality staff signing in.

The provider is found by discovery (``/.well-known/openid-configuration``, cached); the client
authenticates at the token endpoint with a signed assertion (``private_key_jwt``, RFC 7523, as
HelseID requires) or a secret (``client_secret_post``). The ID token is verified against the
provider's JWKS (the same allow-list of algorithms and key sizes as access tokens), for issuer,
audience, expiry and the sign-in's nonce; the reviewer's name and role come from the ID token or,
when the provider keeps them there, from the userinfo endpoint.

Written here rather than taken from a library: the flow is small, and joserfc (which verifies
every other token here) does the cryptography. Nothing of the tokens is kept: HelseID's ID token
carries the person's national identity number, which must not reach a log or the store.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from receiver.auth import JwksCache, header_kid
from receiver.jose import JosePolicy
from wiring.settings import Settings

log = logging.getLogger(__name__)


class SignInFailed(Exception):
    """The provider's answer cannot sign anyone in; ``reason`` says why, in words for staff."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignedIn:
    subject: str
    name: str


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    end_session_endpoint: str | None


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class OidcClient:
    def __init__(self, settings: Settings, *, client: httpx.AsyncClient | None = None) -> None:
        assert settings.review_oidc_issuer
        assert settings.review_oidc_client_id
        self._issuer = settings.review_oidc_issuer.rstrip("/")
        self._client_id = settings.review_oidc_client_id
        self._secret = settings.review_oidc_client_secret
        self._key = _load_client_key(settings)
        self._scopes = settings.review_oidc_scopes
        self._role_claim = settings.review_oidc_role_claim
        self._role = settings.review_oidc_role
        self._name_claim = settings.review_oidc_name_claim
        self._redirect_uri = settings.review_oidc_redirect_uri
        self._leeway = settings.token_leeway_seconds
        self._policy = JosePolicy.from_settings(settings)
        self._http = client or httpx.AsyncClient(timeout=10.0)
        self._metadata: ProviderMetadata | None = None
        self._jwks: JwksCache | None = None

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()
        await self._http.aclose()

    def redirect_uri(self, base_url: str) -> str:
        return self._redirect_uri or base_url.rstrip("/") + "/review/callback"

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is None:
            url = self._issuer + "/.well-known/openid-configuration"
            try:
                response = await self._http.get(url)
                response.raise_for_status()
                document = response.json()
                metadata = ProviderMetadata(
                    issuer=document["issuer"],
                    authorization_endpoint=document["authorization_endpoint"],
                    token_endpoint=document["token_endpoint"],
                    jwks_uri=document["jwks_uri"],
                    userinfo_endpoint=document.get("userinfo_endpoint"),
                    end_session_endpoint=document.get("end_session_endpoint"),
                )
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.warning("OpenID discovery at %s failed: %s", url, type(exc).__name__)
                raise SignInFailed("Innloggingstjenesten svarer ikke. Prøv igjen om litt.") from exc
            if metadata.issuer.rstrip("/") != self._issuer:
                raise SignInFailed("Innloggingstjenesten oppgir en annen utsteder enn avtalt.")
            self._metadata = metadata
            self._jwks = JwksCache(metadata.jwks_uri, refresh_seconds=300.0, policy=self._policy)
        return self._metadata

    async def authorization_url(
        self, base_url: str, *, state: str, nonce: str, code_verifier: str
    ) -> str:
        metadata = await self.metadata()
        query = {
            "response_type": "code",
            "client_id": self._client_id,
            "redirect_uri": self.redirect_uri(base_url),
            "scope": self._scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        return f"{metadata.authorization_endpoint}?{urlencode(query)}"

    async def end_session_url(self, post_logout_redirect_uri: str) -> str | None:
        """The provider's sign-out page (RP-initiated logout), or None if it has none."""
        try:
            metadata = await self.metadata()
        except SignInFailed:
            return None
        if metadata.end_session_endpoint is None:
            return None
        query = {"client_id": self._client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        return f"{metadata.end_session_endpoint}?{urlencode(query)}"

    async def sign_in(
        self, base_url: str, *, code: str, code_verifier: str, nonce: str
    ) -> SignedIn:
        """Exchange the code, verify the ID token, and find the reviewer's name and role."""
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri(base_url),
            "code_verifier": code_verifier,
            "client_id": self._client_id,
            **self._client_authentication(metadata.token_endpoint),
        }
        try:
            response = await self._http.post(metadata.token_endpoint, data=form)
            tokens = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInFailed("Innloggingstjenesten svarer ikke. Prøv igjen om litt.") from exc
        if response.status_code != 200 or not isinstance(tokens, dict):
            error = tokens.get("error") if isinstance(tokens, dict) else None
            log.warning("token endpoint refused the code: %s", str(error)[:60])
            raise SignInFailed("Innloggingen ble ikke godtatt. Prøv å logge inn på nytt.")
        claims = await self._verify_id_token(str(tokens.get("id_token", "")), nonce)
        if (self._name_claim not in claims or self._role_claim not in claims) and isinstance(
            tokens.get("access_token"), str
        ):
            claims = {**await self._userinfo(metadata, tokens["access_token"], claims), **claims}
        if not _has_role(claims.get(self._role_claim), self._role):
            raise SignInFailed(
                "Du er logget inn, men har ikke rollen for kvalitetskontroll. Be om tilgang."
            )
        name = claims.get(self._name_claim)
        subject = str(claims["sub"])
        return SignedIn(
            subject, (name if isinstance(name, str) and name.strip() else subject)[:200]
        )

    def _client_authentication(self, token_endpoint: str) -> dict[str, str]:
        if self._key is None:
            assert self._secret is not None
            return {"client_secret": self._secret.get_secret_value()}
        now = int(time.time())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": token_endpoint,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + 60,
        }
        key, alg = self._key
        header = {"alg": alg, "typ": "JWT", **({"kid": key.kid} if key.kid else {})}
        return {
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": jwt.encode(header, claims, key, algorithms=[alg]),
        }

    async def _verify_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        assert self._jwks is not None
        metadata = await self.metadata()
        try:
            keys: KeySet = await self._jwks.keys_for(header_kid(token))
            decoded = jwt.decode(
                token,
                keys,
                algorithms=list(self._policy.algorithms),
                registry=self._policy.registry(),
            )
            JWTClaimsRegistry(
                leeway=self._leeway,
                iss={"essential": True, "value": metadata.issuer},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            log.warning("ID token refused: %s", type(exc).__name__)
            raise SignInFailed(
                "Innloggingen kunne ikke bekreftes. Prøv å logge inn på nytt."
            ) from exc
        claims = decoded.claims
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self._client_id not in audiences or (
            len(audiences) > 1 and claims.get("azp") != self._client_id
        ):
            raise SignInFailed("Innloggingen var ment for en annen tjeneste.")
        return dict(claims)

    async def _userinfo(
        self, metadata: ProviderMetadata, access_token: str, id_claims: dict[str, Any]
    ) -> dict[str, Any]:
        if metadata.userinfo_endpoint is None:
            return {}
        try:
            response = await self._http.get(
                metadata.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}
            )
            response.raise_for_status()
            info = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInFailed("Innloggingstjenesten svarer ikke. Prøv igjen om litt.") from exc
        # Userinfo answers for the ID token's subject only (OpenID Connect Core §5.3.2).
        if not isinstance(info, dict) or info.get("sub") != id_claims.get("sub"):
            raise SignInFailed("Innloggingen kunne ikke bekreftes. Prøv å logge inn på nytt.")
        return info


def _has_role(value: Any, role: str) -> bool:
    if isinstance(value, str):
        return role in value.split()
    if isinstance(value, list):
        return role in value
    return False


def _load_client_key(settings: Settings) -> tuple[RSAKey | ECKey, str] | None:
    """The client's private key for private_key_jwt, and the algorithm it signs with."""
    path = settings.review_oidc_client_key_file
    if path is None:
        return None
    jwk = orjson.loads(path.read_bytes())
    if jwk.get("kty") == "RSA":
        key: RSAKey | ECKey = RSAKey.import_key(jwk)
        alg = str(jwk.get("alg") or "RS256")
    elif jwk.get("kty") == "EC":
        key = ECKey.import_key(jwk)
        alg = str(jwk.get("alg") or {"P-256": "ES256", "P-384": "ES384"}.get(jwk.get("crv"), ""))
    else:
        raise ValueError(f"{path}: the client key must be an RSA or EC private JWK")
    if not key.is_private:
        raise ValueError(f"{path}: the client key has no private part")
    return key, alg
