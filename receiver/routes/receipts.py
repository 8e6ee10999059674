"""``GET /v1/receipts/{receipt_id}`` — a receipt with its items' current status."""

from __future__ import annotations

from fastapi import APIRouter

from receiver.deps import Reporter, RuntimeDep
from receiver.problems import Problem
from receiver.responses import OrjsonResponse

router = APIRouter(prefix="/v1", tags=["receipts"])


@router.get("/receipts/{receipt_id}", summary="A receipt (only to the unit that sent it)")
async def get_receipt(receipt_id: str, principal: Reporter, runtime: RuntimeDep) -> OrjsonResponse:
    receipt = await runtime.receipts.get(receipt_id)
    # Another unit's receipt is answered exactly like a missing one.
    if receipt is None or receipt.unit != principal.unit:
        raise Problem(
            404, "not_found", "No such receipt", f"No receipt {receipt_id} for this unit."
        )
    return OrjsonResponse(receipt.as_dict())
