"""Health, readiness and metrics for operators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from eventlog.port import LogUnavailableError
from receiver.deps import RuntimeDep
from receiver.responses import OrjsonResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> OrjsonResponse:
    return OrjsonResponse({"status": "ok"})


@router.get("/readyz", summary="The event log and the store answer (and consumers run, if any)")
async def readyz(request: Request, runtime: RuntimeDep) -> OrjsonResponse:
    checks: dict[str, str] = {}
    try:
        await runtime.event_log.ping()
        checks["event_log"] = "ok"
    except LogUnavailableError:
        checks["event_log"] = "unavailable"
    try:
        async with runtime.engines.reader.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception:  # any failure to reach the store means "not ready", whatever its type
        checks["store"] = "unavailable"
        runtime.metrics.store_errors.labels("gateway").inc()
    for name, consumer in request.app.state.consumers.items():
        checks[f"consumer:{name}"] = "ok" if consumer.healthy else "starting"
    runtime.metrics.record_readiness(checks)
    ready = all(v == "ok" for v in checks.values())
    return OrjsonResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
