"""The SLASH-compatible intake (``GET /keys``, ``POST /message``) with real encrypted, DPoP-bound
requests built the way FHI's client builds them: AES-256-CBC with the IV first, the AES key
wrapped with RSA-OAEP-SHA256 for a key from ``/keys``, and a DPoP proof carrying the message
claims. Error codes are FHI's (see :mod:`receiver.slash`)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.padding import PKCS7
from joserfc import jws
from joserfc.jwk import ECKey
from prometheus_client import CollectorRegistry

from eventlog.port import LogUnavailableError
from receiver.app import create_app
from receiver.auth import DevIssuer
from receiver.slash.keys import SlashKeyStore
from tests.conftest import OTHER_UNIT, UNIT, running_app
from tests.integration.helpers import example_message, records_in_log, wait_for_status
from wiring.settings import Settings

MESSAGE_URL = "http://intake.test/message"
VENDOR = {
    "x-vendor-name": "Softwarebedrift AS",
    "x-software-name": "PasientJournal123",
    "x-software-version": "1.0.4",
    "x-export-software-version": "3.0.9",
    "x-data-extraction-date": "31.12.2023",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # 2048-bit keys keep key generation quick in tests (production default: 3072).
    return Settings(
        data_dir=tmp_path / "data",
        environment="test",
        consumer_poll_seconds=0.05,
        slash_key_bits=2048,
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Sealed:
    """A message encrypted for one key, and the proof claims that describe it."""

    body: str
    claims: dict[str, Any]
    plaintext: bytes


@dataclass
class SlashSender:
    """An EPJ client: its own DPoP key, a token bound to it, and FHI's encryption steps."""

    http: httpx.AsyncClient
    issuer: DevIssuer
    unit: str = UNIT
    scopes: list[str] = field(default_factory=lambda: ["intake:report"])
    bind: bool = True

    def __post_init__(self) -> None:
        self.key = ECKey.generate_key("P-256", private=True)
        self.token = self.issuer.mint(
            self.unit, scopes=self.scopes, dpop_jkt=self.key.thumbprint() if self.bind else None
        )

    def proof(
        self,
        claims: dict[str, Any],
        *,
        htu: str = MESSAGE_URL,
        htm: str = "POST",
        key: ECKey | None = None,
        typ: str = "dpop+jwt",
    ) -> str:
        signer = key or self.key
        header = {"typ": typ, "alg": "ES256", "jwk": signer.as_dict(private=False)}
        payload = {
            "jti": str(uuid.uuid4()),
            "htm": htm,
            "htu": htu,
            "iat": int(time.time()),
            "ath": _b64url(hashlib.sha256(self.token.encode()).digest()),
            **claims,
        }
        return jws.serialize_compact(header, orjson.dumps(payload), signer, algorithms=["ES256"])

    async def first_key(self) -> dict[str, Any]:
        response = await self.http.get("/keys")
        assert response.status_code == 200, response.text
        keys: list[dict[str, Any]] = response.json()
        return keys[0]

    @staticmethod
    def seal(
        plaintext: bytes,
        key: dict[str, Any],
        *,
        msg_type: str = "HST_Avtale",
        msg_version: str | int = "1",
    ) -> Sealed:
        aes_key, iv = os.urandom(32), os.urandom(16)
        padder = PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        public = serialization.load_pem_public_key(key["publicKey"].encode())
        assert isinstance(public, rsa.RSAPublicKey)
        wrapped = public.encrypt(
            aes_key,
            OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        return Sealed(
            body=base64.b64encode(iv + ciphertext).decode(),
            claims={
                "msg_type": msg_type,
                "msg_version": msg_version,
                "msg_hash": _b64url(hashlib.sha256(plaintext).digest()),
                "enc_sym_key": _b64url(wrapped),
                "enc_key_id": key["id"],
            },
            plaintext=plaintext,
        )

    async def post(
        self,
        sealed: Sealed,
        *,
        proof: str | None = None,
        headers: dict[str, str] | None = None,
        body: str | None = None,
    ) -> httpx.Response:
        sent = {
            "Authorization": f"DPoP {self.token}",
            "DPoP": proof if proof is not None else self.proof(sealed.claims),
            "Content-Type": "text/plain",
            **VENDOR,
            **(headers or {}),
        }
        return await self.http.post(
            "/message",
            content=sealed.body if body is None else body,
            headers={k: v for k, v in sent.items() if v},
        )

    async def send(self, message: Any, **seal_options: Any) -> httpx.Response:
        plaintext = message if isinstance(message, bytes) else orjson.dumps(message)
        return await self.post(self.seal(plaintext, await self.first_key(), **seal_options))


@pytest.fixture
def sender(client: httpx.AsyncClient, issuer: DevIssuer) -> SlashSender:
    return SlashSender(client, issuer)


@pytest.fixture
def bearer(issuer: DevIssuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:report'])}"}


def _refused(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["delivered"] is False
    assert body["errors"], body
    assert body["errors"][0]["errorCode"] == code, body
    assert set(body["errors"][0]) == {"errorCode", "propertyName", "errorMessage", "errorDetails"}
    assert body["errors"][0]["errorMessage"].startswith("Error: ")
    return body


def _correlation_ids(response: httpx.Response) -> list[str]:
    return response.headers.get_list("x-correlation-id")


# --- GET /keys --------------------------------------------------------------------------------


async def test_keys_are_published_as_fhi_entries_and_jwks(client: httpx.AsyncClient) -> None:
    response = await client.get("/keys")
    assert response.status_code == 200
    assert "max-age=" in response.headers["cache-control"]
    keys = response.json()
    assert len(keys) == 1
    key = keys[0]
    assert key["id"] == key["kid"]
    assert (key["kty"], key["use"], key["alg"]) == ("RSA", "enc", "RSA-OAEP-256")
    assert key["publicKey"].startswith("-----BEGIN PUBLIC KEY-----")
    # Default lifetime 90 days, overlap 14: at least the overlap is left of the current key.
    assert time.time() + 14 * 86_400 < key["exp"] <= time.time() + 90 * 86_400
    assert key["expirationDate"].endswith("Z")
    assert {"n", "e"} <= key.keys()
    assert not {"d", "p", "q", "private_key_pem"} & key.keys()
    assert (await client.get("/keys")).json() == keys  # the same key until it rotates


def test_key_files_are_private(settings: Settings) -> None:
    store = SlashKeyStore.from_settings(settings)
    assert len(store.published()) == 1
    files = list((settings.data_dir / "slash-keys").glob("*.json"))
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o600
    again = SlashKeyStore.from_settings(settings)  # a restart (or another replica) reuses it
    assert [k.kid for k in again.published()] == [k.kid for k in store.published()]


def test_a_key_given_by_settings(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem_file = tmp_path / "slash.pem"
    pem_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    settings = Settings(
        data_dir=tmp_path / "data",
        slash_key_file=pem_file,
        slash_key_password="secret",
        slash_key_expires="2999-01-01",
    )
    (key,) = SlashKeyStore.from_settings(settings).published()
    assert key.private_key is not None
    assert key.private_key.private_numbers() == private.private_numbers()
    assert key.published()["expirationDate"] == "2999-01-01T00:00:00Z"
    assert not (settings.data_dir / "slash-keys").exists()
    with pytest.raises(ValueError, match="INTAKE_SLASH_KEY_EXPIRES"):
        SlashKeyStore.from_settings(
            Settings(data_dir=tmp_path / "data", slash_key_file=pem_file, slash_key_password="x")
        )


# --- POST /message: delivered ----------------------------------------------------------------


async def test_a_good_message_is_delivered_and_applied(
    sender: SlashSender, client: httpx.AsyncClient, bearer: dict[str, str], settings: Settings
) -> None:
    response = await sender.send(example_message())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["delivered"] is True
    assert body["errors"] == []
    receipt_id = body["receiptId"]
    assert body["receiptUrl"] == f"/v1/receipts/{receipt_id}"
    assert response.headers["location"] == f"/v1/receipts/{receipt_id}"
    # Ours comes first; see test_the_correlation_id_is_only_the_receipt_id.
    assert _correlation_ids(response)[0] == receipt_id
    final = await wait_for_status(client, receipt_id, bearer, {"applied"})
    assert final["submission"]["unit_orgnr"] == UNIT
    assert final["submission"]["vendor"] == "Softwarebedrift AS"
    assert final["submission"]["idempotency_key"].startswith("slash:")
    assert [i["status"] for i in final["items"]] == ["applied"] * 3
    assert await records_in_log(settings) == 3


async def test_the_correlation_id_is_only_the_receipt_id(sender: SlashSender) -> None:
    response = await sender.send(example_message())
    assert _correlation_ids(response) == [response.json()["receiptId"]]


async def test_a_resent_message_gets_the_same_receipt(
    sender: SlashSender, client: httpx.AsyncClient, bearer: dict[str, str], settings: Settings
) -> None:
    message = orjson.dumps(example_message())
    first = await sender.send(message)
    # A resend is encrypted again (new AES key and IV) and carries a new proof.
    second = await sender.send(message, msg_version=1)
    assert first.status_code == second.status_code == 200
    assert first.json()["receiptId"] == second.json()["receiptId"]
    assert second.headers["idempotent-replayed"] == "true"
    await wait_for_status(client, first.json()["receiptId"], bearer, {"applied"})
    assert await records_in_log(settings) == 3


async def test_rejected_items_refuse_the_message_by_default(
    sender: SlashSender, settings: Settings
) -> None:
    response = await sender.send(example_message("invalid/item_errors.json"))
    body = _refused(response, 400, 2008)
    assert {e["propertyName"].split("/")[3] for e in body["errors"]} == {"0", "2"}  # items 0, 2
    assert all(e["errorCode"] == 2008 for e in body["errors"])
    assert all(re.match(r"[A-Z]{3}-\d{3}: ", e["errorDetails"]) for e in body["errors"])
    assert await records_in_log(settings) == 0  # the valid item was not stored either
    assert _correlation_ids(response)  # a GUID, as FHI's client needs
    uuid.UUID(_correlation_ids(response)[0])


async def test_rejected_items_still_deliver_and_point_to_the_receipt(
    tmp_path: Path, issuer: DevIssuer
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        environment="test",
        consumer_poll_seconds=0.05,
        slash_key_bits=2048,
        slash_rejected_items="deliver_valid",
    )
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        issuer = DevIssuer.load_or_create(settings)
        bearer = {"Authorization": f"Bearer {issuer.mint(UNIT, scopes=['intake:report'])}"}
        sender = SlashSender(client, issuer)
        response = await sender.send(example_message("invalid/item_errors.json"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["delivered"] is True
        assert body["receiptStatus"] == "partially_accepted"
        pointer, *each = body["errors"]
        assert pointer["errorCode"] == 2008
        assert "2 of 3 items" in pointer["errorMessage"]
        assert body["receiptUrl"] in pointer["errorDetails"]
        assert each, "each rejected item's errors are listed"
        assert {e["propertyName"].split("/")[3] for e in each} == {"0", "2"}  # items 0 and 2
        receipt = await wait_for_status(client, body["receiptId"], bearer, {"partially_applied"})
        assert [i["status"] for i in receipt["items"]] == ["rejected", "applied", "rejected"]


async def test_a_message_from_a_base64url_client_with_a_bom_is_delivered(
    sender: SlashSender,
) -> None:
    plaintext = b"\xef\xbb\xbf" + orjson.dumps(example_message())
    sealed = sender.seal(plaintext, await sender.first_key())
    body = base64.urlsafe_b64encode(base64.b64decode(sealed.body)).decode()
    wrapped = "\r\n".join(body[i : i + 76] for i in range(0, len(body), 76))  # MIME line breaks
    response = await sender.post(sealed, body=wrapped, headers={"Content-Type": ""})
    assert response.status_code == 200, response.text
    assert response.json()["delivered"] is True


# --- POST /message: refused, and nothing reaches the log --------------------------------------


async def test_crypto_failures(sender: SlashSender, settings: Settings) -> None:
    key = await sender.first_key()
    message = orjson.dumps(example_message())

    wrong_hash = sender.seal(message, key)
    wrong_hash.claims["msg_hash"] = _b64url(hashlib.sha256(b"something else").digest())
    _refused(await sender.post(wrong_hash), 400, 1006)

    bad_digest = sender.seal(message, key)
    bad_digest.claims["msg_hash"] = "not a hash"
    _refused(await sender.post(bad_digest), 400, 1005)

    unknown_key = sender.seal(message, key)
    unknown_key.claims["enc_key_id"] = "no-such-key"
    body = _refused(await sender.post(unknown_key), 400, 1004)
    assert body["errors"][0]["propertyName"] == "enc_key_id"

    # Flipping the last byte of the second-to-last block always breaks the padding; it is
    # answered like a hash mismatch, so the answers are no padding oracle.
    tampered = sender.seal(message, key)
    raw = bytearray(base64.b64decode(tampered.body))
    raw[-17] ^= 0xFF
    _refused(await sender.post(tampered, body=base64.b64encode(bytes(raw)).decode()), 400, 1006)

    flipped = sender.seal(message, key)  # a flipped bit in the middle: padding intact
    raw = bytearray(base64.b64decode(flipped.body))
    raw[40] ^= 0x01
    _refused(await sender.post(flipped, body=base64.b64encode(bytes(raw)).decode()), 400, 1006)

    truncated = sender.seal(message, key)
    short = base64.b64decode(truncated.body)[:-5]
    _refused(await sender.post(truncated, body=base64.b64encode(short).decode()), 400, 1009)
    _refused(await sender.post(sender.seal(message, key), body="not base64 at all!"), 400, 1009)

    wrong_wrap = sender.seal(message, key)
    wrong_wrap.claims["enc_sym_key"] = _b64url(os.urandom(256))
    _refused(await sender.post(wrong_wrap), 400, 1008)

    assert await records_in_log(settings) == 0


async def test_authentication_failures(
    sender: SlashSender, client: httpx.AsyncClient, issuer: DevIssuer, settings: Settings
) -> None:
    key = await sender.first_key()
    message = orjson.dumps(example_message())
    sealed = sender.seal(message, key)

    no_proof = await sender.post(sealed, proof="")
    _refused(no_proof, 401, 1001)
    assert no_proof.headers["www-authenticate"].startswith("DPoP ")
    _refused(await sender.post(sealed, headers={"Authorization": ""}), 401, 1001)
    _refused(
        await sender.post(sealed, headers={"Authorization": f"Bearer {sender.token}"}), 401, 1002
    )
    _refused(await sender.post(sealed, headers={"Authorization": "DPoP nonsense"}), 401, 1002)

    _refused(
        await sender.post(sealed, proof=sender.proof(sealed.claims, htu="http://x/message")),
        401,
        2005,
    )
    _refused(await sender.post(sealed, proof=sender.proof(sealed.claims, htm="PUT")), 401, 2005)
    other_key = ECKey.generate_key("P-256", private=True)
    _refused(await sender.post(sealed, proof=sender.proof(sealed.claims, key=other_key)), 401, 2005)
    _refused(await sender.post(sealed, proof=sender.proof(sealed.claims, typ="JWT")), 401, 2004)
    _refused(await sender.post(sealed, proof="not.a.proof"), 401, 2004)

    # A proof is used once: its first use (refused here for its hash) spends it.
    spent = sender.seal(message, key)
    spent.claims["msg_hash"] = _b64url(hashlib.sha256(b"x").digest())
    proof = sender.proof(spent.claims)
    _refused(await sender.post(spent, proof=proof), 400, 1006)
    _refused(await sender.post(spent, proof=proof), 401, 2005)

    unbound = SlashSender(client, issuer, bind=False)
    _refused(await unbound.post(unbound.seal(message, key)), 401, 2003)
    no_scope = SlashSender(client, issuer, scopes=["intake:state"])
    _refused(await no_scope.post(no_scope.seal(message, key)), 403, 2001)

    assert await records_in_log(settings) == 0


async def test_content_and_header_failures(
    sender: SlashSender, client: httpx.AsyncClient, issuer: DevIssuer, settings: Settings
) -> None:
    key = await sender.first_key()
    message = orjson.dumps(example_message())

    other_unit = SlashSender(client, issuer, unit=OTHER_UNIT)
    body = _refused(await other_unit.post(other_unit.seal(message, key)), 403, 2001)
    assert "another" in body["errors"][0]["errorDetails"]

    unknown = _refused(
        await sender.post(sender.seal(message, key, msg_type="HST_Ukjent")), 400, 2006
    )
    assert unknown["errors"][0]["propertyName"] == "msg_type"
    _refused(await sender.post(sender.seal(message, key, msg_version="9")), 400, 2006)
    _refused(await sender.post(sender.seal(message, key, msg_version="v1")), 400, 1003)
    _refused(await sender.post(sender.seal(message, key, msg_type="")), 400, 1003)

    _refused(await sender.post(sender.seal(b'[{"orgNr": ', key)), 400, 2007)
    _refused(await sender.post(sender.seal(b"\xff\xfe[]", key)), 400, 2007)
    schema = _refused(await sender.post(sender.seal(b'{"not": "a list"}', key)), 400, 2008)
    assert schema["errors"][0]["propertyName"] is not None
    _refused(await sender.post(sender.seal(b"[]", key)), 400, 2008)

    missing = await sender.post(
        sender.seal(message, key),
        headers={"x-vendor-name": "", "x-data-extraction-date": ""},
    )
    body = _refused(missing, 400, 1001)
    assert {e["propertyName"] for e in body["errors"]} == {
        "x-vendor-name",
        "x-data-extraction-date",
    }
    for bad_date in ("2023-12-31", "31.13.2023", "1.1.2024", "01.01.2999"):
        response = await sender.post(
            sender.seal(message, key), headers={"x-data-extraction-date": bad_date}
        )
        assert _refused(response, 400, 1002)["errors"][0]["propertyName"] == (
            "x-data-extraction-date"
        )
    _refused(
        await sender.post(sender.seal(message, key), headers={"Content-Type": "application/json"}),
        415,
        1002,
    )

    assert await records_in_log(settings) == 0


async def test_too_large_and_rate_limited(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "d", max_body_bytes=2048, rate_limit_per_minute=12, slash_key_bits=2048
    )
    issuer = DevIssuer.load_or_create(settings)
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        sender = SlashSender(client, issuer)
        big = example_message()
        big[0]["avtale"] *= 20
        _refused(await sender.send(big), 413, 2009)
        sealed = sender.seal(orjson.dumps(example_message()), await sender.first_key())
        oversized = base64.b64encode(os.urandom(4096)).decode()
        _refused(await sender.post(sealed, body=oversized), 413, 2009)
        # The bucket holds 2 requests (12/min); the third is told to come back later.
        limited = await sender.post(sealed)
        body = _refused(limited, 503, 2010)
        assert int(limited.headers["retry-after"]) >= 1
        assert "again" in body["errors"][0]["errorDetails"]
        assert await records_in_log(settings) == 0


async def test_an_unavailable_log_is_a_storage_error_to_retry(
    sender: SlashSender, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = client._transport.app.state.runtime  # type: ignore[attr-defined]

    async def down(records: object) -> None:
        raise LogUnavailableError("broker down")

    monkeypatch.setattr(runtime.event_log, "produce", down)
    response = await sender.send(example_message())
    _refused(response, 503, 2010)
    assert response.headers["retry-after"]


# --- key rotation ----------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(16_666_666 * 60 + 10)  # 10 s into a 60 s period (lifetime - overlap)


def _rotating_store(directory: Path, clock: Clock) -> SlashKeyStore:
    """Keys that live 100 s and overlap 40 s: a new one every 60 s, on the test's clock."""
    return SlashKeyStore(
        directory, lifetime_seconds=100, overlap_seconds=40, key_bits=2048, clock=clock
    )


def _use_store(client: httpx.AsyncClient, store: SlashKeyStore) -> None:
    client._transport.app.state.slash_keys = store  # type: ignore[attr-defined]


async def test_keys_rotate_with_overlap_and_the_older_key_still_decrypts(
    sender: SlashSender, client: httpx.AsyncClient, tmp_path: Path, clock: Clock
) -> None:
    _use_store(client, _rotating_store(tmp_path / "keys", clock))
    (old,) = (await client.get("/keys")).json()
    assert old["exp"] == clock.now - 10 + 100
    message = orjson.dumps(example_message())
    to_old_key = sender.seal(message, old)

    clock.now += 60  # the next period: its key is published, the old one still decrypts
    keys = (await client.get("/keys")).json()
    assert len(keys) == 2
    assert keys[1]["id"] == old["id"]
    new = keys[0]
    assert new["exp"] > old["exp"]  # the newest (latest expiry) first, as FHI's client expects
    response = await sender.post(to_old_key)
    assert response.status_code == 200, response.text
    assert response.json()["delivered"] is True

    clock.now += 35  # the old key has expired: only the new one is published
    assert [k["id"] for k in (await client.get("/keys")).json()] == [new["id"]]
    _refused(await sender.post(sender.seal(message, old)), 400, 1007)
    again = await sender.post(sender.seal(message, new))
    assert again.json()["receiptId"] == response.json()["receiptId"]  # same content, receipt


async def test_an_expired_key_is_refused_and_stores_nothing(
    sender: SlashSender, client: httpx.AsyncClient, tmp_path: Path, clock: Clock, settings: Settings
) -> None:
    _use_store(client, _rotating_store(tmp_path / "keys", clock))
    (key,) = (await client.get("/keys")).json()
    sealed = sender.seal(orjson.dumps(example_message()), key)
    clock.now = key["exp"] + 1
    body = _refused(await sender.post(sealed), 400, 1007)
    assert body["errors"][0]["propertyName"] == "enc_key_id"
    # A restarted receiver (a new store over the same files) still knows the key id as expired,
    # though it no longer loads the private key.
    restarted = _rotating_store(tmp_path / "keys", clock)
    _use_store(client, restarted)
    _refused(await sender.post(sender.seal(sealed.plaintext, key)), 400, 1007)
    assert key["id"] not in [k.kid for k in restarted.published()]
    assert await records_in_log(settings) == 0
