"""Tokens from a real issuer's JWKS endpoint (served on loopback): caching and key rotation."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver.auth import CLAIM_ORGNR_PARENT, AuthError, TokenVerifier, verifier_for
from wiring.settings import Settings

ISSUER = "https://helseid-sts.test"


class Issuer:
    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, private=True, auto_kid=True)]
        self.fetches = 0

    async def jwks(self, request: Request) -> JSONResponse:
        self.fetches += 1
        return JSONResponse({"keys": [k.as_dict(private=False) for k in self.keys]})

    def token(self, key: RSAKey, **extra: Any) -> str:
        claims = {
            "iss": ISSUER,
            "aud": "register-intake",
            "exp": int(time.time()) + 60,
            CLAIM_ORGNR_PARENT: "974152533",
            "scope": "register-intake/report",
            **extra,
        }
        return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": key.kid}, claims, key)


@pytest.fixture
async def issuer() -> AsyncIterator[tuple[Issuer, str]]:
    state = Issuer()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = Starlette(routes=[Route("/jwks", state.jwks)])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield state, f"http://127.0.0.1:{port}/jwks"
    server.should_exit = True
    await task


async def test_keys_are_fetched_cached_and_rotated(
    issuer: tuple[Issuer, str], tmp_path: Path
) -> None:
    state, url = issuer
    settings = Settings(data_dir=tmp_path, auth_issuer=ISSUER, auth_jwks_url=url)
    verifier = verifier_for(settings)
    try:
        await _rotation(state, verifier)
    finally:
        await verifier.aclose()


async def _rotation(state: Issuer, verifier: TokenVerifier) -> None:
    first = state.keys[0]
    assert (await verifier.verify_async(state.token(first))).unit == "974152533"
    assert (await verifier.verify_async(state.token(first))).unit == "974152533"
    assert state.fetches == 1  # cached

    # The issuer rotates: a new key signs, the old one is withdrawn.
    second = RSAKey.generate_key(2048, private=True, auto_kid=True)
    state.keys = [second]
    verifier._jwks._fetched_at -= 60  # type: ignore[union-attr]  # past the refetch guard
    assert (await verifier.verify_async(state.token(second))).unit == "974152533"
    assert state.fetches == 2
    with pytest.raises(AuthError):
        await verifier.verify_async(state.token(first))

    # Unknown key ids do not make us fetch again and again.
    stranger = RSAKey.generate_key(2048, private=True, auto_kid=True)
    for _ in range(5):
        with pytest.raises(AuthError):
            await verifier.verify_async(state.token(stranger))
    assert state.fetches == 2


def test_a_real_issuer_needs_a_jwks_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JWKS"):
        Settings(data_dir=tmp_path, auth_issuer=ISSUER)
