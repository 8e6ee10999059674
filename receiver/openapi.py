"""The OpenAPI document and its pages: every published model's JSON Schema as a component and as
the body of the reporting endpoint; the security schemes (Bearer, or DPoP per RFC 9449, as the
deployment is configured) with the scope each operation needs; and ``/docs`` (Swagger UI) and
``/redoc`` served from a package's assets, so they work without internet access."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.security.base import SecurityBase
from fastapi.staticfiles import StaticFiles

from schemas.catalogue import Catalogue

SUBMIT_PATH = "/v1/messages/{message_type}/{version}"
DOCS_ASSETS = "/docs/assets"
SLASH_PATH = "/message"  # takes a DPoP-bound token whatever the deployment's /v1 setting

_SCOPES = (
    "Scopes are HelseID's `<audience>/<name>` entries, here named `intake:<name>`: report (send "
    "messages, read own receipts), review (quality staff), state (register staff), admin "
    "(operators)."
)


class DocumentedScheme(SecurityBase):
    """A security scheme as the OpenAPI document names it, with the scopes of the operation that
    depends on it (``Security(BEARER, scopes=[...])``). Authentication itself is
    :func:`receiver.deps.get_principal`'s: this dependency reads nothing."""

    def __init__(self, name: str, model: HTTPBaseModel) -> None:
        self.scheme_name = name
        self.model = model

    async def __call__(self) -> None:
        return None


BEARER = DocumentedScheme(
    "Bearer",
    HTTPBearerModel(
        bearerFormat="JWT",
        description="An access token from the configured issuer (HelseID in production), in "
        "`Authorization: Bearer <token>`, where DPoP is not required. " + _SCOPES,
    ),
)
DPOP = DocumentedScheme(
    "DPoP",
    HTTPBaseModel(  # bearerFormat is for "bearer" only (OpenAPI 3.1, Security Scheme Object)
        scheme="DPoP",
        description="A DPoP-bound access token (`cnf.jkt`) in `Authorization: DPoP <token>`, and "
        "a proof for each request in the `DPoP` header (RFC 9449: typ dpop+jwt, the public jwk, "
        "htm, htu, iat, jti, ath). Required on /v1 where the deployment sets INTAKE_AUTH_DPOP, "
        "and always on SLASH's POST /message. " + _SCOPES,
    ),
)


def install_openapi(app: FastAPI, catalogue: Catalogue, *, dpop: bool) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        refs = []
        for model in catalogue:
            name = f"{model.message_type}_v{model.version}"
            components[name] = {
                k: v for k, v in model.json_schema.items() if k not in ("$schema", "$id")
            }
            refs.append({"$ref": f"#/components/schemas/{name}"})
        body = document["paths"][SUBMIT_PATH]["post"]["requestBody"]
        body["content"]["application/json"]["schema"] = {"anyOf": refs}
        body["description"] = (
            "The message as the model named in the path defines it: "
            + ", ".join(f"{m.message_type} v{m.version}" for m in catalogue)
            + ". Each model's schema is also at GET /v1/message-types/{type}/{version}/schema.json."
        )
        # Each protected operation depends on both schemes; it takes the one configured.
        accepted = "DPoP" if dpop else "Bearer"
        for path, item in document["paths"].items():
            for operation in item.values():
                requirements = operation.get("security")
                if not requirements:
                    operation["security"] = []  # public
                    continue
                keep = "DPoP" if path == SLASH_PATH else accepted
                operation["security"] = [r for r in requirements if keep in r]
                if path != SLASH_PATH:
                    responses = operation.setdefault("responses", {})
                    responses.setdefault("401", {"description": "No valid token (or proof)"})
                    responses.setdefault("403", {"description": "The token lacks the scope"})
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]


def install_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` with their scripts and styles from the ``fastapi-offline``
    package (Swagger UI 5 and ReDoc), not a CDN."""
    assets = resources.files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} – API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} – API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
