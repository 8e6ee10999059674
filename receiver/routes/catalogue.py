"""Published models and rules (no authentication: vendors read them before they integrate)."""

from __future__ import annotations

from fastapi import APIRouter

from receiver.deps import RuntimeDep
from receiver.problems import Problem
from receiver.responses import OrjsonResponse
from validators.rules import load_catalogue as load_rules

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/message-types", summary="Published message types and versions")
async def list_message_types(runtime: RuntimeDep) -> OrjsonResponse:
    return OrjsonResponse(
        [
            {
                "message_type": m.message_type,
                "version": m.version,
                "doc": m.doc,
                "href": f"/v1/message-types/{m.message_type}/{m.version}",
            }
            for m in runtime.catalogue
        ]
    )


@router.get("/message-types/{message_type}/{version}", summary="One model: schema and examples")
async def get_message_type(message_type: str, version: int, runtime: RuntimeDep) -> OrjsonResponse:
    model = runtime.catalogue.get(message_type, version)
    if model is None:
        raise Problem(404, "unknown_message_type", "Unknown message type or version")
    return OrjsonResponse(
        {
            "message_type": model.message_type,
            "version": model.version,
            "doc": model.doc,
            "avro_schema": model.schema,
            "examples": [
                {"name": e.name, "valid": e.valid, "message": e.message} for e in model.examples
            ],
        }
    )


@router.get("/rules", summary="The rule catalogue")
async def list_rules() -> OrjsonResponse:
    return OrjsonResponse([r.as_dict() for r in load_rules().values()])
