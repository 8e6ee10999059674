"""The security matrix: each refused request gets its status and stores nothing; DPoP per
RFC 9449 when configured; rate limits; no personal identifier in any log line."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.auth import DevIssuer
from receiver.dpop import ath_of
from tests.conftest import UNIT, running_app
from tests.integration.helpers import appointment, example_message, records_in_log, wait_for_status
from wiring.settings import Settings

URL = "/v1/messages/HST_Avtale/1"
FULL_URL = "http://intake.test" + URL


def _proof(
    key: ECKey,
    *,
    htm: str = "POST",
    htu: str = FULL_URL,
    token: str | None = None,
    iat: float | None = None,
    jti: str | None = None,
) -> str:
    claims: dict[str, Any] = {
        "htm": htm,
        "htu": htu,
        "iat": int(iat or time.time()),
        "jti": jti or str(uuid.uuid4()),
    }
    if token is not None:
        claims["ath"] = ath_of(token)
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    return jws.serialize_compact(header, orjson.dumps(claims), key, algorithms=["ES256"])


@pytest.fixture
async def dpop_app(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = Settings(data_dir=tmp_path / "d", auth_dpop=True, consumer_poll_seconds=0.05)
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        yield client, settings


async def test_dpop_bound_requests(dpop_app: tuple[httpx.AsyncClient, Settings]) -> None:
    client, settings = dpop_app
    key = ECKey.generate_key("P-256", private=True)
    stranger = ECKey.generate_key("P-256", private=True)
    issuer = DevIssuer.load_or_create(settings)
    token = issuer.mint(UNIT, scopes=["intake:report"], dpop_jkt=key.thumbprint())
    unbound = issuer.mint(UNIT, scopes=["intake:report"])
    body = appointment("D-1")

    def post(proof: str | None, tok: str = token, scheme: str = "DPoP") -> Any:
        headers = {"Authorization": f"{scheme} {tok}"}
        if proof is not None:
            headers["DPoP"] = proof
        return client.post(URL, json=body, headers=headers)

    replayed = _proof(key, token=token)
    cases = {
        "no proof": post(None),
        "bearer scheme": post(_proof(key, token=token), scheme="Bearer"),
        "unbound token": post(_proof(key, token=unbound), tok=unbound),
        "wrong htu": post(_proof(key, token=token, htu="http://intake.test/v1/other")),
        "wrong htm": post(_proof(key, token=token, htm="PUT")),
        "stale iat": post(_proof(key, token=token, iat=time.time() - 600)),
        "future iat": post(_proof(key, token=token, iat=time.time() + 600)),
        "foreign key": post(_proof(stranger, token=token)),
        "no ath": post(_proof(key)),
    }
    for name, request in cases.items():
        response = await request
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"].startswith("DPoP"), name
    assert await records_in_log(settings, ("intake.accepted.HST_Avtale.v1",)) == 0

    good = await post(replayed)
    assert good.status_code == 202, good.text
    again = await post(replayed)
    assert again.status_code == 401  # a proof is good once
    assert "already used" in again.json()["detail"]
    assert await records_in_log(settings, ("intake.accepted.HST_Avtale.v1",)) == 1


async def test_token_matrix_stores_nothing(
    client: httpx.AsyncClient, issuer: DevIssuer, settings: Settings
) -> None:
    from tests.unit.test_auth import _b64

    alg_none = f"{_b64(orjson.dumps({'alg': 'none'}))}.{_b64(orjson.dumps({'sub': 'x'}))}."
    stranger = ECKey.generate_key("P-256", private=True, auto_kid=True)
    foreign = jws.serialize_compact(
        {"alg": "ES256", "typ": "at+jwt", "kid": stranger.kid},
        orjson.dumps(
            {
                "iss": issuer.issuer,
                "aud": issuer.audience,
                "exp": time.time() + 60,
                "helseid://claims/client/claims/orgnr_parent": UNIT,
                "scope": f"{issuer.audience}/report",
            }
        ),
        stranger,
    )

    def signed(claims: dict[str, Any]) -> str:
        return jws.serialize_compact(
            {"alg": "ES256", "typ": "at+jwt", "kid": issuer._key.kid},
            orjson.dumps(
                {
                    "exp": time.time() + 60,
                    "scope": f"{issuer.audience}/report",
                    "helseid://claims/client/claims/orgnr_parent": UNIT,
                    **claims,
                }
            ),
            issuer._key,
        )

    public_pem = issuer._key.as_pem(private=False)
    hs_input = (
        f"{_b64(orjson.dumps({'alg': 'HS256', 'typ': 'at+jwt'}))}."
        f"{_b64(orjson.dumps({'iss': issuer.issuer, 'aud': issuer.audience}))}"
    )
    hs_mac = hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest()
    tokens = {
        "wrong issuer": signed({"iss": "https://evil.test", "aud": issuer.audience}),
        "wrong audience": signed({"iss": issuer.issuer, "aud": "another-api"}),
        "hs256 with the public key": f"{hs_input}.{_b64(hs_mac)}",
        "expired": issuer.mint(UNIT, scopes=["intake:report"], lifetime_seconds=-300),
        "alg none": alg_none,
        "unknown key": foreign,
        "garbage": "a.b.c",
    }
    for name, token in tokens.items():
        response = await client.post(
            URL, json=example_message(), headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, name
    assert await records_in_log(settings, ("intake.accepted.HST_Avtale.v1",)) == 0


async def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", rate_limit_per_minute=6)
    token = DevIssuer.load_or_create(settings).mint(UNIT, scopes=["intake:report"])
    headers = {"Authorization": f"Bearer {token}"}
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        first = await client.get("/v1/completeness", headers=headers)
        second = await client.get("/v1/completeness", headers=headers)
    assert first.status_code == 200
    assert (second.status_code, second.json()["code"]) == (429, "rate_limited")
    assert int(second.headers["retry-after"]) >= 1


async def test_no_personal_identifier_reaches_the_logs(
    client: httpx.AsyncClient, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = example_message("invalid/identifiers_and_codes.json")
    good = example_message()
    for message in (bad, good):
        receipt = (await client.post(URL, json=message, headers=auth)).json()
        await wait_for_status(
            client, receipt["receipt_id"], auth, {"applied", "partially_applied", "rejected"}
        )
    identifiers = set(re.findall(r'"(\d{11,12})"', orjson.dumps(bad + good).decode()))
    identifiers |= {"15031245610", "65086210015"}
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records  # the run did log
    for identifier in identifiers:
        assert identifier not in text


async def test_deep_nesting_and_huge_strings_are_refused_cleanly(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    response = await client.post(
        URL, content=deep, headers={**auth, "Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()["code"]) == (400, "malformed_json")
    message = example_message()
    message[0]["avtale"][0]["lokalKonsultasjonType"] = "x" * 2_000_000
    long = await client.post(URL, json=message, headers=auth)
    assert long.status_code == 202
    [item] = [i for i in long.json()["items"] if i["path"] == "/0/avtale/0"]
    assert (item["status"], item["findings"][0]["rule_id"]) == ("rejected", "STR-004")
    assert (
        await records_in_log(settings, ("intake.accepted.HST_Avtale.v1",)) == 2
    )  # the other two items of the message


async def test_a_body_that_trickles_in_gets_408_and_stores_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", environment="test", body_timeout_seconds=0.3)
    issuer = DevIssuer.load_or_create(settings)
    auth = {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:report'])}"}
    body = orjson.dumps(appointment("SLOW-1"))

    async def trickle() -> AsyncIterator[bytes]:
        for n in range(0, len(body), 20):
            yield body[n : n + 20]
            await asyncio.sleep(0.05)

    app = create_app(settings, registry=CollectorRegistry())
    async with running_app(app) as client:
        slow = await client.post(
            URL, content=trickle(), headers={**auth, "Content-Type": "application/json"}
        )
        assert (slow.status_code, slow.json()["code"]) == (408, "body_timeout")
        fast = await client.post(
            URL, content=body, headers={**auth, "Content-Type": "application/json"}
        )
        assert fast.status_code == 202
    assert await records_in_log(settings, ("intake.accepted.HST_Avtale.v1",)) == 1
