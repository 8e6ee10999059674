"""Health, readiness and metrics for operators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.deps import RuntimeDep
from receiver.responses import OrjsonResponse
from wiring.readiness import Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> OrjsonResponse:
    return OrjsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="The event log takes a produce, the store a write, and the consumers run (if any)",
)
async def readyz(request: Request) -> OrjsonResponse:
    readiness: Readiness = request.app.state.readiness
    checks = await readiness.evaluate()
    ready = readiness.ready(checks)
    return OrjsonResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
