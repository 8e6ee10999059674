"""Review sign-in settings and the pasted-token form: development only; production signs staff in
with OpenID Connect (tests/browser/test_review_oidc.py runs the flow against a real provider)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from receiver.app import create_app
from tests.conftest import running_app
from wiring.runtime import open_identity_keys
from wiring.settings import Settings

PRODUCTION = {
    "environment": "production",
    "auth_issuer": "https://issuer.example",
    "auth_jwks_url": "https://issuer.example/jwks",
    "feed_secret": "f" * 40,
}


async def test_production_offers_no_pasted_token_form(tmp_path: Path) -> None:
    embedded = Settings(data_dir=tmp_path / "data")
    open_identity_keys(embedded)
    settings = Settings(
        data_dir=tmp_path / "data",
        identity_keyset_file=embedded.resolved_identity_keyset,
        **PRODUCTION,  # type: ignore[arg-type]
    )
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        form = await client.get("/review/login")
        assert form.status_code == 200
        assert 'id="token"' not in form.text
        assert 'id="no-sign-in"' in form.text
        pasted = await client.post("/review/login", data={"token": "anything"})
        assert pasted.status_code == 403
        assert "intake_review=" not in pasted.headers.get("set-cookie", "")


async def test_development_offers_the_form(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", environment="test")
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        form = await client.get("/review/login")
        assert 'id="token"' in form.text
        assert 'id="login-oidc"' not in form.text


def test_a_sign_in_provider_needs_a_client_and_one_credential(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CLIENT_ID"):
        Settings(review_oidc_issuer="https://helseid-sts.nhn.no")
    with pytest.raises(ValidationError, match="one of"):
        Settings(review_oidc_issuer="https://helseid-sts.nhn.no", review_oidc_client_id="c")
    with pytest.raises(ValidationError, match="one of"):
        Settings(
            review_oidc_issuer="https://helseid-sts.nhn.no",
            review_oidc_client_id="c",
            review_oidc_client_secret="s",
            review_oidc_client_key_file=tmp_path / "key.json",
        )
    with pytest.raises(ValidationError, match="https"):
        Settings(
            review_oidc_issuer="http://helseid.example",
            review_oidc_client_id="c",
            review_oidc_client_secret="s",
            identity_keyset_file=tmp_path / "keyset.json",
            **PRODUCTION,  # type: ignore[arg-type]
        )
