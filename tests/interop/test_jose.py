"""Access tokens and DPoP proofs made by PyJWT (not the product's JOSE library), with the RSA and
EC keys real clients hold: HelseID-shaped tokens from an issuer whose JWKS mixes RSA and EC
keys, and proofs signed RS256/PS256 with 2048–4096-bit RSA keys and ES256/ES384 with EC keys.
Refusals name their real cause, and the challenge follows RFC 9449 §7.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import orjson
import pytest
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from tests.conftest import UNIT, running_app
from tests.integration.helpers import appointment
from tests.interop.peers import ClientKey, Issuer, b64url, dpop_proof
from wiring.settings import Settings

ISSUER = "https://helseid-sts.interop.test"
AUDIENCE = "register-intake"
URL = "/v1/messages/HST_Avtale/1"
FULL_URL = "http://intake.test" + URL

# (proof algorithm, RSA bits) as vendors' systems hold them.
CLIENT_KEYS = [("RS256", 2048), ("PS256", 2048), ("RS256", 3072), ("PS256", 4096),
               ("ES256", 0), ("ES384", 0)]  # fmt: skip


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer(
        ISSUER,
        {
            "rsa-2048": ClientKey.generate("RS256", 2048),
            "rsa-4096-ps": ClientKey.generate("PS256", 4096),
            "ec-p256": ClientKey.generate("ES256"),
        },
    )


@pytest.fixture
async def client(tmp_path: Path, issuer: Issuer) -> AsyncIterator[httpx.AsyncClient]:
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps(issuer.jwks()))
    settings = Settings(
        data_dir=tmp_path / "d",
        auth_issuer=ISSUER,
        auth_jwks_file=jwks,
        auth_audience=AUDIENCE,
        auth_dpop=True,
    )
    async with running_app(create_app(settings, registry=CollectorRegistry())) as c:
        yield c


def _headers(token: str, proof: str) -> dict[str, str]:
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


async def _dry_run(client: httpx.AsyncClient, token: str, proof: str) -> httpx.Response:
    return await client.post(
        URL, params={"dry_run": "true"}, json=appointment("JOSE-1"), headers=_headers(token, proof)
    )


@pytest.mark.parametrize(("alg", "bits"), CLIENT_KEYS)
@pytest.mark.parametrize("token_kid", ["rsa-2048", "rsa-4096-ps", "ec-p256"])
async def test_tokens_and_proofs_of_every_key_kind_are_accepted(
    client: httpx.AsyncClient, issuer: Issuer, alg: str, bits: int, token_kid: str
) -> None:
    key = ClientKey.generate(alg, bits or 2048)
    token = issuer.token(
        token_kid, unit=UNIT, scopes=["report"], jkt=key.thumbprint(), audience=AUDIENCE
    )
    proof = dpop_proof(key, method="POST", url=FULL_URL, access_token=token)
    response = await _dry_run(client, token, proof)
    assert response.status_code in (200, 202), response.text
    assert response.json()["counts"]["accepted"] == 1


def _refusal(response: httpx.Response) -> tuple[int, str, str]:
    return response.status_code, response.json()["detail"], response.headers["www-authenticate"]


async def test_refusals_name_the_real_cause(client: httpx.AsyncClient, issuer: Issuer) -> None:
    key = ClientKey.generate("PS256", 2048)
    token = issuer.token(
        "rsa-2048", unit=UNIT, scopes=["report"], jkt=key.thumbprint(), audience=AUDIENCE
    )

    weak = ClientKey.generate("RS256", 1024)
    weak_token = issuer.token(
        "rsa-2048", unit=UNIT, scopes=["report"], jkt=weak.thumbprint(), audience=AUDIENCE
    )
    status, detail, challenge = _refusal(
        await _dry_run(
            client, weak_token, dpop_proof(weak, method="POST", url=FULL_URL, access_token=token)
        )
    )
    assert status == 401
    assert "RSA key of 1024 bits is not accepted" in detail
    assert 'error="invalid_dpop_proof"' in challenge
    assert 'algs="' in challenge
    assert "PS256" in challenge
    assert "ES256" in challenge

    padded = {**key.public_jwk(), "x5c": ["A" * 3000]}  # a header no allowed key needs
    _, detail, _ = _refusal(
        await _dry_run(
            client,
            token,
            dpop_proof(key, method="POST", url=FULL_URL, access_token=token, jwk=padded),
        )
    )
    assert "header is too large" in detail

    proof = dpop_proof(key, method="POST", url=FULL_URL, access_token=token)
    head, payload, _ = proof.split(".")
    forged = ".".join([head, payload, b64url(b"\x00" * 256)])
    _, detail, _ = _refusal(await _dry_run(client, token, forged))
    assert "signature does not verify" in detail

    other = ClientKey.generate("ES256")
    _, detail, _ = _refusal(
        await _dry_run(
            client, token, dpop_proof(other, method="POST", url=FULL_URL, access_token=token)
        )
    )
    assert "bound to another key" in detail

    hs = {"typ": "dpop+jwt", "alg": "HS256", "jwk": key.public_jwk()}
    symmetric = pyjwt.encode({"htm": "POST", "htu": FULL_URL}, "k" * 32, headers=hs)
    _, detail, _ = _refusal(await _dry_run(client, token, symmetric))
    assert "algorithm 'HS256' is not accepted" in detail

    nothing = await client.post(URL, json=appointment("JOSE-2"))
    assert nothing.status_code == 401
    assert "error=" not in nothing.headers["www-authenticate"]  # no credential: no error code
    assert nothing.headers["www-authenticate"].startswith("DPoP ")


async def test_a_token_signed_with_a_key_outside_the_allow_list_is_refused(
    tmp_path: Path,
) -> None:
    weak_issuer = Issuer(ISSUER, {"rsa-1024": ClientKey.generate("RS256", 1024)})
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps(weak_issuer.jwks()))
    settings = Settings(
        data_dir=tmp_path / "d", auth_issuer=ISSUER, auth_jwks_file=jwks, auth_audience=AUDIENCE
    )
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        token = weak_issuer.token(
            "rsa-1024", unit=UNIT, scopes=["report"], jkt=None, audience=AUDIENCE
        )
        response = await client.post(
            URL, json=appointment("JOSE-3"), headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_settings_keep_one_allow_list(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="HS256"):
        Settings(data_dir=tmp_path, jose_algorithms=["ES256", "HS256"])
    narrowed: Any = Settings(data_dir=tmp_path, jose_algorithms=["ES256"])
    assert narrowed.jose_algorithms == ["ES256"]
