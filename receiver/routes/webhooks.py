"""Webhook registration for reporting units, and parked deliveries for operators."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from receiver.deps import Admin, Reporter, RuntimeDep
from receiver.problems import Problem
from receiver.responses import OrjsonResponse
from statestore.webhooks import WebhookRepository

router = APIRouter(prefix="/v1", tags=["webhooks"])

MIN_SECRET_LENGTH = 32


class WebhookRequest(BaseModel):
    url: str = Field(max_length=2000, examples=["https://epj.example/intake-receipts"])
    secret: str = Field(max_length=200, description=f"At least {MIN_SECRET_LENGTH} characters.")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook(url: str, secret: str, *, production: bool) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    allowed = parts.scheme == "https" or (
        parts.scheme == "http" and _is_loopback(host) and not production
    )
    if not allowed or not host:
        raise Problem(
            422,
            "webhook_url_not_https",
            "The webhook URL must use https",
            "Only https URLs are accepted (plain http to loopback in development).",
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise Problem(
            422,
            "webhook_secret_too_short",
            "The webhook secret is too short",
            f"Use at least {MIN_SECRET_LENGTH} random characters.",
        )


@router.put("/webhook", summary="Push receipt changes to this URL, signed with this secret")
async def put_webhook(
    body: WebhookRequest, principal: Reporter, runtime: RuntimeDep
) -> OrjsonResponse:
    check_webhook(body.url, body.secret, production=runtime.settings.environment == "production")
    await WebhookRepository(runtime.engines).put(principal.unit, body.url, body.secret)
    return OrjsonResponse({"url": body.url, "signature_header": "Intake-Signature"})


@router.get("/webhook", summary="The unit's webhook (without its secret)")
async def get_webhook(principal: Reporter, runtime: RuntimeDep) -> OrjsonResponse:
    hook = await WebhookRepository(runtime.engines).get(principal.unit)
    if hook is None:
        raise Problem(404, "not_found", "No webhook", "This unit has no webhook.")
    return OrjsonResponse({"url": hook.url})


@router.delete("/webhook", status_code=204, summary="Stop pushing receipt changes")
async def delete_webhook(principal: Reporter, runtime: RuntimeDep) -> Response:
    if not await WebhookRepository(runtime.engines).delete(principal.unit):
        raise Problem(404, "not_found", "No webhook", "This unit has no webhook.")
    return Response(status_code=204)


@router.get("/admin/webhook-deliveries", summary="Webhook deliveries (operators)")
async def list_deliveries(
    _admin: Admin,
    runtime: RuntimeDep,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|parked)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> OrjsonResponse:
    deliveries = await WebhookRepository(runtime.engines).listing(status, limit)
    return OrjsonResponse(
        [
            {
                "delivery_id": d.delivery_id,
                "unit": d.unit,
                "receipt_id": d.receipt_id,
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": d.next_attempt_at.isoformat(),
                "last_error": d.last_error,
            }
            for d in deliveries
        ]
    )


@router.post(
    "/admin/webhook-deliveries/{delivery_id}/retry",
    status_code=202,
    summary="Requeue a parked delivery (operators)",
)
async def retry_delivery(
    delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)], _admin: Admin, runtime: RuntimeDep
) -> Response:
    if not await WebhookRepository(runtime.engines).requeue(delivery_id, datetime.now(UTC)):
        raise Problem(404, "not_found", "No parked delivery with that id")
    return Response(status_code=202)
