"""Token verification: every check can fail on its own."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from receiver.auth import (
    CLAIM_ORGNR_CHILD,
    CLAIM_ORGNR_PARENT,
    CLAIM_ORGNR_SUPPLIER,
    AuthError,
    DevIssuer,
    TokenVerifier,
    verifier_for,
)
from wiring.settings import Settings

AUD = "register-intake"
ISS = "urn:test-issuer"


@pytest.fixture
def key() -> ECKey:
    return ECKey.generate_key("P-256", private=True, auto_kid=True)


@pytest.fixture
def verifier(key: ECKey) -> TokenVerifier:
    from joserfc.jwk import KeySet

    keys = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})
    return TokenVerifier(keys, issuer=ISS, audience=AUD, leeway=5)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISS,
        "aud": AUD,
        "exp": now + 60,
        "nbf": now - 1,
        "iat": now,
        "scope": f"{AUD}/report {AUD}/state other-api/report",
        CLAIM_ORGNR_PARENT: "974152533",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(key: ECKey, claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": key.kid, **header}, claims, key)


def test_a_good_token_names_unit_supplier_and_scopes(key: ECKey, verifier: TokenVerifier) -> None:
    principal = verifier.verify(_sign(key, _claims(**{CLAIM_ORGNR_SUPPLIER: "987654325"})))
    assert principal.unit == "974152533"
    assert principal.supplier == "987654325"
    assert principal.scopes == {"intake:report", "intake:state"}


def test_child_organisation_wins(key: ECKey, verifier: TokenVerifier) -> None:
    token = _sign(key, _claims(**{CLAIM_ORGNR_CHILD: "987654325"}))
    assert verifier.verify(token).unit == "987654325"


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "urn:someone-else"},
        {"aud": "another-api"},
        {"exp": int(time.time()) - 86_400},
        {"exp": None},
        {"nbf": int(time.time()) + 86_400},  # a day: robust to the VM clock being stepped
        {CLAIM_ORGNR_PARENT: None},
        {CLAIM_ORGNR_PARENT: "12345"},
    ],
    ids=["issuer", "audience", "expired", "no-exp", "not-yet-valid", "no-unit", "bad-unit"],
)
def test_bad_claims_are_refused(
    key: ECKey, verifier: TokenVerifier, claims: dict[str, Any]
) -> None:
    with pytest.raises(AuthError):
        verifier.verify(_sign(key, _claims(**claims)))


def test_wrong_type_is_refused(key: ECKey, verifier: TokenVerifier) -> None:
    with pytest.raises(AuthError):
        verifier.verify(_sign(key, _claims(), typ="dpop+jwt"))


def test_another_key_is_refused(verifier: TokenVerifier) -> None:
    stranger = ECKey.generate_key("P-256", private=True, auto_kid=True)
    with pytest.raises(AuthError):
        verifier.verify(_sign(stranger, _claims()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    header = _b64(orjson.dumps({"alg": "none", "typ": "at+jwt"}))
    token = f"{header}.{_b64(orjson.dumps(_claims()))}."
    with pytest.raises(AuthError):
        verifier.verify(token)


def test_hmac_signed_with_the_public_key_is_refused(key: ECKey, verifier: TokenVerifier) -> None:
    # The classic confusion attack: HMAC keyed with the issuer's public key, which anyone has.
    signing_input = (
        f"{_b64(orjson.dumps({'alg': 'HS256', 'typ': 'at+jwt', 'kid': key.kid}))}."
        f"{_b64(orjson.dumps(_claims()))}"
    )
    mac = hmac.new(key.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{_b64(mac)}"
    with pytest.raises(AuthError):
        verifier.verify(token)


def test_rsa_tokens_from_a_real_issuer_jwks_file(tmp_path: Path) -> None:
    rsa = RSAKey.generate_key(2048, private=True, auto_kid=True)
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps({"keys": [rsa.as_dict(private=False)]}))
    settings = Settings(data_dir=tmp_path, auth_issuer=ISS, auth_jwks_file=jwks)
    token = jwt.encode(
        {"alg": "PS256", "typ": "JWT", "kid": rsa.kid}, _claims(), rsa, algorithms=["PS256"]
    )
    assert verifier_for(settings).verify(token).unit == "974152533"
    with pytest.raises(RuntimeError):
        DevIssuer.load_or_create(settings)


def test_dev_issuer_tokens_pass_the_same_verifier(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    issuer = DevIssuer.load_or_create(settings)
    token = issuer.mint("974152533", scopes=["intake:report", "intake:review"])
    principal = verifier_for(settings).verify(token)
    assert principal.scopes == {"intake:report", "intake:review"}
    again = DevIssuer.load_or_create(settings)  # the key pair is kept in the data dir
    assert verifier_for(settings).verify(again.mint("974152533", scopes=[])).scopes == set()
    assert (tmp_path / "dev-issuer" / "signing-key.json").stat().st_mode & 0o077 == 0


def test_unit_from_authorization_details(key: ECKey, verifier: TokenVerifier) -> None:
    details = [
        {"type": "helseid_authorization", "organization_number": "NO:ORGNR:974152533:987654325"}
    ]
    token = _sign(key, _claims(**{CLAIM_ORGNR_PARENT: None, "authorization_details": details}))
    assert verifier.verify(token).unit == "987654325"
    parent_only = [{"type": "helseid_authorization", "organization_number": "NO:ORGNR:974152533"}]
    token = _sign(key, _claims(**{CLAIM_ORGNR_PARENT: None, "authorization_details": parent_only}))
    assert verifier.verify(token).unit == "974152533"


async def test_a_verified_token_is_remembered_until_it_expires(
    key: ECKey, verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    check = verifier._verify

    def counting(token: str, keys: Any) -> Any:
        checks.append(token)
        return check(token, keys)

    monkeypatch.setattr(verifier, "_verify", counting)
    token = _sign(key, _claims(exp=int(time.time()) + 30))
    assert (await verifier.verify_async(token)).unit == "974152533"
    assert (await verifier.verify_async(token)).unit == "974152533"
    assert len(checks) == 1  # the second request did not check the signature again

    # Past its exp the token is checked again, and refused (leeway 5 s).
    later = time.time() + 40
    monkeypatch.setattr(time, "time", lambda: later)  # for the cache and joserfc's exp check
    with pytest.raises(AuthError):
        await verifier.verify_async(token)
    assert len(checks) == 2


async def test_a_refused_token_is_not_remembered(key: ECKey, verifier: TokenVerifier) -> None:
    token = _sign(key, _claims(aud="another-api"))
    for _ in range(2):
        with pytest.raises(AuthError):
            await verifier.verify_async(token)
    assert verifier._verified == {}


async def test_a_new_key_set_forgets_what_the_old_one_verified(
    key: ECKey, verifier: TokenVerifier
) -> None:
    from joserfc.jwk import KeySet

    token = _sign(key, _claims())
    await verifier.verify_async(token)
    other = ECKey.generate_key("P-256", private=True, auto_kid=True)
    verifier._keys = KeySet.import_key_set({"keys": [other.as_dict(private=False)]})
    with pytest.raises(AuthError):  # as after a JWKS refresh that withdrew the key
        await verifier.verify_async(token)
