"""Receipts: one by id, and the unit's feed of receipt changes (long-poll, opaque cursor)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from receiver.cursors import CursorCodec, CursorError
from receiver.deps import Reporter, RuntimeDep
from receiver.problems import Problem
from receiver.responses import OrjsonResponse
from statestore.feed import START

router = APIRouter(prefix="/v1", tags=["receipts"])

MAX_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.5


@router.get("/receipts/{receipt_id}", summary="A receipt (only to the unit that sent it)")
async def get_receipt(receipt_id: str, principal: Reporter, runtime: RuntimeDep) -> OrjsonResponse:
    receipt = await runtime.receipts.get(receipt_id)
    # Another unit's receipt is answered exactly like a missing one.
    if receipt is None or receipt.unit != principal.unit:
        raise Problem(
            404, "not_found", "No such receipt", f"No receipt {receipt_id} for this unit."
        )
    return OrjsonResponse(receipt.as_dict())


@router.get(
    "/receipts",
    summary="The unit's feed of receipt changes, oldest first; long-polls up to `wait` seconds",
)
async def receipt_feed(
    request: Request,
    principal: Reporter,
    runtime: RuntimeDep,
    after: Annotated[
        str | None, Query(max_length=500, description="Cursor from the last page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
) -> OrjsonResponse:
    codec: CursorCodec = request.app.state.cursors
    try:
        position = codec.decode(principal.unit, after) if after else START
    except CursorError as exc:
        raise Problem(
            400, "invalid_cursor", "The cursor is not valid for this unit", str(exc)
        ) from exc
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, runtime.settings.feed_max_wait_seconds)
    while True:
        changes = await runtime.feed.read(position, limit, unit=principal.unit)
        remaining = deadline - loop.time()
        if changes or remaining <= 0:
            break
        await runtime.receipt_changed.wait(min(remaining, POLL_SECONDS))
    views: dict[str, dict[str, Any]] = {}
    for change in changes:
        if change.receipt_id not in views:
            receipt = await runtime.receipts.get(change.receipt_id)
            if receipt is not None:
                views[change.receipt_id] = receipt.as_dict()
    last = changes[-1].position if changes else position
    return OrjsonResponse(
        {
            "changes": [
                {
                    "change_id": codec.encode(principal.unit, c.position),
                    "kind": c.kind,
                    "changed_at": c.changed_at.isoformat(),
                    "receipt": views.get(c.receipt_id),
                }
                for c in changes
            ],
            "cursor": codec.encode(principal.unit, last),
        }
    )
