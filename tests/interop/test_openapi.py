"""The OpenAPI document as tools we did not write read it: openapi-spec-validator (OpenAPI 3.1 and
its JSON Schema dialect) accepts it, every operation names its security scheme and scope, and
``/docs`` and ``/redoc`` load every asset from the gateway itself (nothing from a CDN)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from tests.conftest import running_app
from wiring.settings import Settings

PUBLIC = {"/healthz", "/readyz", "/metrics", "/keys", "/v1/message-types", "/v1/rules"}


@pytest.fixture(params=[False, True], ids=["bearer", "dpop"])
async def document_and_client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[dict[str, Any], httpx.AsyncClient]]:
    settings = Settings(data_dir=tmp_path / "d", auth_dpop=request.param)
    async with running_app(create_app(settings, registry=CollectorRegistry())) as client:
        document = (await client.get("/openapi.json")).json()
        yield document, client


async def test_an_independent_validator_accepts_the_document(
    document_and_client: tuple[dict[str, Any], httpx.AsyncClient],
) -> None:
    document, _ = document_and_client
    validate(document)  # raises OpenAPIValidationError naming the first fault


async def test_every_operation_says_how_it_is_authorised(
    document_and_client: tuple[dict[str, Any], httpx.AsyncClient],
) -> None:
    document, _ = document_and_client
    schemes = document["components"]["securitySchemes"]
    assert schemes["Bearer"]["scheme"] == "bearer"
    assert schemes["DPoP"]["scheme"] == "DPoP"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "security" in operation, f"{method.upper()} {path}"
            for requirement in operation["security"]:
                for name, scopes in requirement.items():
                    assert name in schemes
                    assert all(s.startswith("intake:") for s in scopes), (path, scopes)
    submit = document["paths"]["/v1/messages/{message_type}/{version}"]["post"]["security"]
    assert submit in ([{"Bearer": ["intake:report"]}], [{"DPoP": ["intake:report"]}])
    assert document["paths"]["/message"]["post"]["security"] == [{"DPoP": ["intake:report"]}]
    review = document["paths"]["/v1/review/items"]["get"]["security"]
    assert next(iter(review[0].values())) == ["intake:review"]
    assert document["paths"]["/v1/message-types"]["get"]["security"] == []


async def test_docs_load_every_asset_from_the_gateway(
    document_and_client: tuple[dict[str, Any], httpx.AsyncClient],
) -> None:
    _, client = document_and_client
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        urls += re.findall(r"""url: ?["']([^"']+)["']""", html)
        assert urls, page
        for url in urls:
            assert not url.startswith(("http:", "https:", "//")), f"{page} loads {url}"
            if url != "/openapi.json":
                asset = await client.get(url)
                assert asset.status_code == 200, url
                assert len(asset.content) > 1000, url
