"""The OpenAPI document, with every published model's JSON Schema as a component and as the
body of the reporting endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from schemas.catalogue import Catalogue

SUBMIT_PATH = "/v1/messages/{message_type}/{version}"


def install_openapi(app: FastAPI, catalogue: Catalogue) -> None:
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
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]
