"""Published models and rules (no authentication: vendors read them before they integrate)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from eventlog.topics import Topics
from receiver.deps import RuntimeDep, published_model
from receiver.problems import Problem, check_day
from receiver.responses import OrjsonResponse
from schemas.catalogue import MessageModel, WireSchema
from validators.codelists import CodeList
from validators.rules import load_catalogue as load_rules

router = APIRouter(prefix="/v1", tags=["models"])


def _summary(model: MessageModel) -> dict[str, Any]:
    base = f"/v1/message-types/{model.message_type}/{model.version}"
    return {
        "message_type": model.message_type,
        "version": model.version,
        "doc": model.doc,
        "status": model.status,
        "sunset": model.sunset.isoformat() if model.sunset else None,
        "compatibility": model.compatibility,
        "href": base,
        "avro_schema_href": f"{base}/schema.avsc",
        "json_schema_href": f"{base}/schema.json",
        "event_schema_href": f"{base}/event-schema.avsc",
        "event_schema_fingerprint": model.event_codec.fingerprint.hex(),
        "submit_href": f"/v1/messages/{model.message_type}/{model.version}",
    }


@router.get("/message-types", summary="Published message types and versions")
async def list_message_types(runtime: RuntimeDep) -> OrjsonResponse:
    return OrjsonResponse([_summary(m) for m in runtime.catalogue])


@router.get(
    "/message-types/{message_type}/{version}",
    summary="One model: Avro schema, generated JSON Schema, examples and code-list bindings",
)
async def get_message_type(message_type: str, version: int, runtime: RuntimeDep) -> OrjsonResponse:
    model = published_model(runtime, message_type, version)
    return OrjsonResponse(
        {
            **_summary(model),
            "avro_schema": model.schema,
            "json_schema": model.json_schema,
            "codelist_bindings": list(model.codelist_bindings),
            "examples": [
                {
                    "name": e.name,
                    "valid": e.valid,
                    "message": e.message,
                    "expected_findings": e.expected or None,
                }
                for e in model.examples
            ],
        }
    )


def _download(model: MessageModel, body: Any, media_type: str, suffix: str) -> Response:
    filename = f"{model.message_type}.v{model.version}.{suffix}"
    return OrjsonResponse(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/message-types/{message_type}/{version}/schema.avsc", summary="Download: Avro")
async def download_avro(message_type: str, version: int, runtime: RuntimeDep) -> Response:
    model = published_model(runtime, message_type, version)
    return _download(model, model.schema, "application/avro+json", "avsc")


@router.get("/message-types/{message_type}/{version}/schema.json", summary="Download: JSON Schema")
async def download_json_schema(message_type: str, version: int, runtime: RuntimeDep) -> Response:
    model = published_model(runtime, message_type, version)
    return _download(model, model.json_schema, "application/schema+json", "json")


@router.get(
    "/message-types/{message_type}/{version}/event-schema.avsc",
    summary="Download: the Avro schema of this model's events on its accepted topic",
)
async def download_event_schema(message_type: str, version: int, runtime: RuntimeDep) -> Response:
    model = published_model(runtime, message_type, version)
    return _download(model, model.event_codec.schema, "application/avro+json", "event.avsc")


def _wire_summary(wire: WireSchema, topics: Topics) -> dict[str, Any]:
    model = wire.model
    return {
        "name": wire.name,
        "fingerprint": wire.fingerprint,
        "topic": topics.accepted(model.message_type, model.version)
        if model is not None
        else getattr(topics, wire.topic),
        "message_type": model.message_type if model is not None else None,
        "version": model.version if model is not None else None,
        "href": f"/v1/wire-schemas/{wire.fingerprint}",
    }


@router.get(
    "/wire-schemas",
    summary="Every Avro schema a value on a topic is written with, by name and fingerprint",
)
async def list_wire_schemas(runtime: RuntimeDep) -> OrjsonResponse:
    wires = runtime.catalogue.wire_schemas()
    return OrjsonResponse([_wire_summary(w, runtime.topics) for w in wires])


@router.get(
    "/wire-schemas/{name_or_fingerprint}",
    summary="One wire schema, by its full name or its CRC-64-AVRO fingerprint (16 hex digits, "
    "the 8 bytes after C3 01 in a value)",
)
async def get_wire_schema(name_or_fingerprint: str, runtime: RuntimeDep) -> Response:
    wanted = name_or_fingerprint.strip().lower()
    for wire in runtime.catalogue.wire_schemas():
        if wanted in (wire.fingerprint, wire.name.lower()):
            return OrjsonResponse(
                wire.codec.schema,
                media_type="application/avro+json",
                headers={"Content-Disposition": f'attachment; filename="{wire.name}.avsc"'},
            )
    raise Problem(
        404,
        "unknown_schema",
        "No such wire schema",
        f"No schema named {name_or_fingerprint[:100]!r}; GET /v1/wire-schemas lists them.",
    )


@router.get("/rules", summary="The rule catalogue")
async def list_rules() -> OrjsonResponse:
    return OrjsonResponse([r.as_dict() for r in load_rules().values()])


def _codelist_summary(codelist: CodeList) -> dict[str, Any]:
    return {
        "id": codelist.id,
        "title": codelist.title,
        "sample": codelist.sample,
        "source": codelist.source,
        "versions": [v.isoformat() for v in codelist.versions],
        "href": f"/v1/codelists/{codelist.id}",
    }


@router.get("/codelists", summary="Code lists used by validation")
async def list_codelists(runtime: RuntimeDep) -> OrjsonResponse:
    return OrjsonResponse([_codelist_summary(c) for c in runtime.codelists.registry])


@router.get("/codelists/{codelist_id}", summary="A code list: versions and members")
async def get_codelist(
    codelist_id: str, runtime: RuntimeDep, on: date | None = None
) -> OrjsonResponse:
    check_day(on, "on")
    codelist = runtime.codelists.registry.get(codelist_id)
    if codelist is None:
        raise Problem(404, "unknown_codelist", "Unknown code list", f"No code list {codelist_id}.")
    version = codelist.version_on(on or date.today())
    members = codelist.members_on(version) if version else []
    return OrjsonResponse(
        {
            **_codelist_summary(codelist),
            "version": codelist.version_label(version) if version else None,
            "members": [
                {
                    "code": m.code,
                    "display": m.display,
                    "active": m.active,
                    "since": m.effective.isoformat(),
                }
                for m in members
            ],
        }
    )
