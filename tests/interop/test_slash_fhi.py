"""SLASH as FHI's client sees it: a client written from FHI's published algorithm
(tests/interop/fhi_client.py, no code of ours), with RSA (RS256, as on FHI's certificate path)
and EC (ES256) DPoP keys and HelseID-shaped tokens from a JWKS issuer, sends messages to
``POST /message``: the success path to ``applied``, and every documented error code (1001–1009,
2001–2010), each refusal storing nothing."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.slash.keys import SlashKeyStore
from tests.conftest import OTHER_UNIT, UNIT, running_app
from tests.integration.helpers import example_message, records_in_log, wait_for_status
from tests.interop.fhi_client import Answer, FhiClient
from tests.interop.peers import ClientKey, Issuer, dpop_proof
from wiring.settings import Settings

ISSUER = "https://helseid-sts.interop.test"
AUDIENCE = "register-intake"
BASE = "http://intake.test"


@dataclass
class Deployment:
    http: httpx.AsyncClient
    settings: Settings
    issuer: Issuer

    def client(
        self,
        alg: str = "RS256",
        *,
        unit: str | None = UNIT,
        scopes: tuple[str, ...] = ("report",),
        bound: bool = True,
    ) -> FhiClient:
        key = ClientKey.generate(alg, 2048)
        token = self.issuer.token(
            "helseid",
            unit=unit or "",
            scopes=list(scopes),
            jkt=key.thumbprint() if bound else None,
            audience=AUDIENCE,
        )
        return FhiClient(self.http, BASE, key, token)

    def bearer(self) -> dict[str, str]:
        token = self.issuer.token(
            "helseid", unit=UNIT, scopes=["report"], jkt=None, audience=AUDIENCE
        )
        return {"Authorization": f"Bearer {token}"}

    async def stored(self) -> int:
        return await records_in_log(self.settings)


def _settings(tmp_path: Path, issuer: Issuer, **extra: Any) -> Settings:
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps(issuer.jwks()))
    return Settings(
        data_dir=tmp_path / "d",
        environment="test",
        auth_issuer=ISSUER,
        auth_jwks_file=jwks,
        auth_audience=AUDIENCE,
        consumer_poll_seconds=0.05,
        slash_key_bits=2048,
        **extra,
    )


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer(ISSUER, {"helseid": ClientKey.generate("RS256", 2048)})


@pytest.fixture
async def deployment(tmp_path: Path, issuer: Issuer) -> AsyncIterator[Deployment]:
    settings = _settings(tmp_path, issuer)
    async with running_app(create_app(settings, registry=CollectorRegistry())) as http:
        yield Deployment(http, settings, issuer)


def _refused(answer: Answer, status: int, code: int) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert answer.delivered is False
    assert answer.codes[0] == code, answer.body
    first = answer.errors[0]
    assert set(first) == {"errorCode", "propertyName", "errorMessage", "errorDetails"}
    assert isinstance(first["errorDetails"], str)  # FHI's client reads it as a string
    assert first["errorMessage"].startswith("Error: ")
    return first


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
async def test_a_message_is_delivered_and_applied(deployment: Deployment, alg: str) -> None:
    client = deployment.client(alg)
    answer = await client.send(example_message())
    assert answer.status == 200, answer.body
    assert answer.delivered is True
    assert answer.errors == []
    receipt_id = answer.body["receiptId"]
    assert str(answer.correlation_id) == receipt_id
    final = await wait_for_status(deployment.http, receipt_id, deployment.bearer(), {"applied"})
    assert [i["status"] for i in final["items"]] == ["applied"] * 3


async def test_both_client_versions_read_the_key_id(deployment: Deployment) -> None:
    """The older client sends ``enc_key_id`` as Guid.ToString() (lowercase); the newer one sends
    ``id`` as it was published; a client printing the GUID in uppercase works too."""
    (entry,) = (await deployment.http.get(f"{BASE}/keys")).json()
    client = deployment.client()
    key = await client.public_key()
    assert entry["id"] == str(key.id)  # published in the form Guid.ToString() prints
    plaintext = orjson.dumps(example_message())
    for sent_id in (str(key.id), entry["id"], str(key.id).upper()):
        envelope = client.envelope(plaintext, key, msg_type="HST_Avtale", msg_version="1")
        envelope.claims["enc_key_id"] = sent_id
        answer = await client.post(envelope)
        assert answer.status == 200, (sent_id, answer.body)


async def test_transport_and_crypto_codes(deployment: Deployment) -> None:
    client = deployment.client()
    key = await client.public_key()
    plaintext = orjson.dumps(example_message())

    def fresh(**claims: str) -> Any:
        envelope = client.envelope(plaintext, key, msg_type="HST_Avtale", msg_version="1")
        envelope.claims.update(claims)
        return envelope

    missing = await client.post(fresh(), headers={"x-software-name": None})
    assert _refused(missing, 400, 1001)["propertyName"] == "x-software-name"
    no_auth = await client.post(fresh(), headers={"Authorization": None})
    _refused(no_auth, 401, 1001)
    bad_date = await client.post(fresh(), headers={"x-data-extraction-date": "2025-12-31"})
    assert _refused(bad_date, 400, 1002)["propertyName"] == "x-data-extraction-date"
    bearer = await client.post(fresh(), headers={"Authorization": f"Bearer {client.token}"})
    _refused(bearer, 401, 1002)
    assert (
        _refused(await client.post(fresh(msg_version="v1")), 400, 1003)["propertyName"]
        == "msg_version"
    )
    assert (
        _refused(
            await client.post(fresh(enc_key_id="00000000-0000-0000-0000-000000000000")), 400, 1004
        )["propertyName"]
        == "enc_key_id"
    )
    assert (
        _refused(await client.post(fresh(msg_hash="not-a-hash")), 400, 1005)["propertyName"]
        == "msg_hash"
    )
    other_hash = FhiClient.envelope(b"[]", key, msg_type="HST_Avtale", msg_version="1")
    _refused(await client.post(fresh(msg_hash=other_hash.claims["msg_hash"])), 400, 1006)
    assert (
        _refused(await client.post(fresh(enc_sym_key="AAAA")), 400, 1008)["propertyName"]
        == "enc_sym_key"
    )
    _refused(await client.post(fresh(), body="not base64 at all!"), 400, 1009)
    short = base64.b64encode(b"\x00" * 20).decode()  # an IV and a partial block
    _refused(await client.post(fresh(), body=short), 400, 1009)
    assert await deployment.stored() == 0


async def test_an_expired_key_is_1007(deployment: Deployment, tmp_path: Path) -> None:
    now = [time.time()]
    store = SlashKeyStore(
        tmp_path / "keys",
        lifetime_seconds=100,
        overlap_seconds=40,
        key_bits=2048,
        clock=lambda: now[0],
    )
    deployment.http._transport.app.state.slash_keys = store  # type: ignore[attr-defined]
    client = deployment.client()
    key = await client.public_key()
    envelope = client.envelope(
        orjson.dumps(example_message()), key, msg_type="HST_Avtale", msg_version="1"
    )
    now[0] = key.expiration.timestamp() + 1
    assert _refused(await client.post(envelope), 400, 1007)["propertyName"] == "enc_key_id"
    assert await deployment.stored() == 0


async def test_token_and_proof_codes(deployment: Deployment) -> None:
    message = example_message()
    no_scope = await deployment.client(scopes=("state",)).send(message)
    _refused(no_scope, 403, 2001)
    elsewhere = example_message()
    elsewhere[0]["orgNr"] = OTHER_UNIT
    _refused(await deployment.client().send(elsewhere), 403, 2001)
    _refused(await deployment.client(unit=None).send(message), 401, 2002)
    _refused(await deployment.client(bound=False).send(message), 401, 2003)

    client = deployment.client("ES256")
    key = await client.public_key()
    envelope = client.envelope(orjson.dumps(message), key, msg_type="HST_Avtale", msg_version="1")
    stranger = ClientKey.generate("ES256")
    head, payload, _ = client.proof(envelope.claims).split(".")
    _, _, foreign_signature = dpop_proof(
        stranger, method="POST", url=f"{BASE}/message", extra=envelope.claims
    ).split(".")
    forged = f"{head}.{payload}.{foreign_signature}"
    assert _refused(await client.post(envelope, proof=forged), 401, 2004)["propertyName"] == "DPoP"
    elsewhere_url = client.proof(envelope.claims, url=f"{BASE}/other")
    _refused(await client.post(envelope, proof=elsewhere_url), 401, 2005)
    once = client.proof(envelope.claims)
    assert (await client.post(envelope, proof=once)).status == 200
    _refused(await client.post(envelope, proof=once), 401, 2005)  # replayed


async def test_content_codes(deployment: Deployment) -> None:
    client = deployment.client()
    unknown_type = await client.send(example_message(), msg_type="HST_Ukjent")
    assert _refused(unknown_type, 400, 2006)["propertyName"] == "msg_type"
    wrong_case = await client.send(example_message(), msg_type="hst_avtale")
    assert "HST_Avtale" in _refused(wrong_case, 400, 2006)["errorDetails"]
    unknown_version = await client.send(example_message(), msg_version="99")
    assert _refused(unknown_version, 400, 2006)["propertyName"] == "msg_version"
    _refused(await client.send(b"{not json"), 400, 2007)
    _refused(await client.send({"not": "a list of units"}), 400, 2008)
    rejected = await client.send(example_message("invalid/item_errors.json"))
    first = _refused(rejected, 400, 2008)
    assert first["propertyName"].startswith("/0/avtale/")
    assert await deployment.stored() == 0


async def test_size_and_storage_codes(tmp_path: Path, issuer: Issuer) -> None:
    settings = _settings(tmp_path, issuer, max_body_bytes=2048, rate_limit_per_minute=12)
    async with running_app(create_app(settings, registry=CollectorRegistry())) as http:
        deployment = Deployment(http, settings, issuer)
        client = deployment.client()
        big = example_message()
        big[0]["avtale"] *= 20
        _refused(await client.send(big), 413, 2009)
        limited = None
        for _ in range(4):  # the bucket holds two requests at 12 a minute
            answer = await client.send(example_message())
            if answer.status == 503:
                limited = answer
                break
        assert limited is not None
        _refused(limited, 503, 2010)


async def test_deliver_valid_lists_each_rejected_item(tmp_path: Path, issuer: Issuer) -> None:
    settings = _settings(tmp_path, issuer, slash_rejected_items="deliver_valid")
    async with running_app(create_app(settings, registry=CollectorRegistry())) as http:
        deployment = Deployment(http, settings, issuer)
        answer = await deployment.client("ES256").send(example_message("invalid/item_errors.json"))
        assert (answer.status, answer.delivered) == (200, True)
        pointer, *each = answer.errors
        assert pointer["errorCode"] == 2008
        assert answer.body["receiptUrl"] in pointer["errorDetails"]
        assert each
        assert all(e["propertyName"].startswith("/0/avtale/") for e in each)
        receipt = await wait_for_status(
            http, answer.body["receiptId"], deployment.bearer(), {"partially_applied"}
        )
        assert [i["status"] for i in receipt["items"]] == ["rejected", "applied", "rejected"]
