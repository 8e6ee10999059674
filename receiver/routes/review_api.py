"""Review API (scope ``intake:review``): rejected items with filters, detail, workflow, notes,
reveal, replay, statistics and completeness across units, as JSON (and CSV). The review pages
(:mod:`receiver.routes.review_pages`) do the same for people in a browser.

Filters are query parameters: ``unit, vendor, software, message_type, version, rule_id, level,
status, from, to`` (days in Norway, inclusive). Bulk actions and replay take the same filter in
their body, or explicit ``item_ids``. Every read of an item, export, reveal and replay is written
to the access log.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from receiver.deps import RuntimeDep
from receiver.person_reads import log_review_read
from receiver.problems import Problem
from receiver.responses import OrjsonResponse, csv_response
from receiver.review_session import Reviewer, ReviewerDep
from receiver.submission import log_unavailable_as_problem
from review import views
from review.masking import as_sent, reveal_value
from review.replay import REPLAY_LATER, ReplayService, verdict_summary
from statestore.review import ReviewRepository, ReviewRow, Status

router = APIRouter(prefix="/v1/review", tags=["review"])

MAX_BULK = 10_000


async def get_review(runtime: RuntimeDep) -> ReviewRepository:  # async: see receiver.deps
    return ReviewRepository(runtime.engines)


ReviewDep = Annotated[ReviewRepository, Depends(get_review)]


def correlation_id(request: Request) -> str:
    return str(getattr(request.state, "correlation_id", ""))


async def log_list(
    review: ReviewRepository, reviewer: Reviewer, request: Request, shown: int
) -> None:
    """A list of rejected items was read: who, how many, with which filter."""
    await review.log_access(
        reviewer.name,
        "list",
        path=str(request.url.query)[:500] or None,
        item_count=shown,
        correlation_id=correlation_id(request),
    )


async def load_item(review: ReviewRepository, item_id: str) -> ReviewRow:
    row = await review.get(item_id)
    if row is None:
        raise Problem(404, "unknown_item", "No such rejected item", f"No item {item_id}.")
    return row


class ItemChange(BaseModel):
    status: Status | None = None
    assignee: str | None = Field(default=None, max_length=200, description="'' unassigns.")


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class RevealIn(BaseModel):
    path: str = Field(
        max_length=500, description="JSON pointer in the item, e.g. /person/fodselsNr"
    )
    reason: str = Field(min_length=3, max_length=500, description="Why it is needed (logged).")
    part: Literal["item", "block"] = "item"


class Selection(BaseModel):
    """Items to act on: explicit ids, or every item matching a filter (query-style keys)."""

    item_ids: list[str] | None = Field(default=None, max_length=MAX_BULK)
    filter: dict[str, str] | None = None


class BulkChange(Selection):
    status: Status | None = None
    assignee: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=4000)


async def selected_ids(review: ReviewRepository, selection: Selection) -> list[str]:
    if selection.item_ids is not None:
        return selection.item_ids
    if selection.filter is None:
        raise Problem(
            422, "empty_selection", "Nothing selected", "Send item_ids or a filter (may be {})."
        )
    return await review.ids(views.read_filter(selection.filter), MAX_BULK)


@router.get("/items", summary="Rejected items, filtered, sorted and paged")
async def list_items(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> OrjsonResponse:
    page, _, _ = await views.search(review, dict(request.query_params))
    await log_list(review, reviewer, request, len(page.rows))
    return OrjsonResponse(
        {
            "items": [views.summary(r) for r in page.rows],
            "total": page.total,
            "page": page.page,
            "pages": page.pages,
            "page_size": page.page_size,
            "status_counts": page.status_counts,
        }
    )


@router.get("/items.csv", summary="Rejected items as CSV (masked), every row of the filter")
async def export_items(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> Any:
    flt = views.read_filter(dict(request.query_params))
    rows = await review.summaries(flt, MAX_BULK)
    await review.log_access(
        reviewer.name,
        "export",
        item_count=len(rows),
        reason="items.csv",
        correlation_id=correlation_id(request),
    )
    return csv_response("rejected-items.csv", views.SUMMARY_COLUMNS, views.summary_rows(rows))


@router.get("/items/{item_id}", summary="One rejected item, masked, with its findings explained")
async def get_item(
    item_id: str, request: Request, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> OrjsonResponse:
    row = await load_item(review, item_id)
    await review.log_access(
        reviewer.name, "view", item_ids=[item_id], correlation_id=correlation_id(request)
    )
    await log_review_read(
        runtime, reviewer.principal, "view", row, as_sent(row, runtime.identities), None
    )
    body = views.detail(runtime, row)
    body["history"] = [
        {
            "at": h.at.isoformat(),
            "actor": h.actor,
            "kind": h.kind,
            "from": h.old_value,
            "to": h.new_value,
            "text": h.text,
        }
        for h in await review.history(item_id)
    ]
    receipt = await runtime.receipts.get(row.receipt_id)
    body["receipt"] = (
        {"receipt_id": receipt.receipt_id, "status": receipt.status, "counts": receipt.counts}
        if receipt
        else None
    )
    resubmitted = await review.resubmitted(row)
    body["resubmitted_at"] = resubmitted.isoformat() if resubmitted else None
    body["unit_recent"] = [
        views.summary(r) for r in await review.recent_for_unit(row.unit, exclude=item_id)
    ]
    return OrjsonResponse(body)


@router.patch("/items/{item_id}", summary="Change an item's status and/or assignee")
async def change_item(
    item_id: str, change: ItemChange, reviewer: ReviewerDep, review: ReviewDep
) -> OrjsonResponse:
    await load_item(review, item_id)
    await review.change([item_id], reviewer.name, status=change.status, assignee=change.assignee)
    row = await load_item(review, item_id)
    return OrjsonResponse(views.summary(row))


@router.post("/items/{item_id}/notes", summary="Add a note to an item", status_code=201)
async def add_note(
    item_id: str, note: NoteIn, reviewer: ReviewerDep, review: ReviewDep
) -> OrjsonResponse:
    await load_item(review, item_id)
    await review.change([item_id], reviewer.name, note=note.text)
    return OrjsonResponse({"item_id": item_id, "actor": reviewer.name}, status_code=201)


@router.post("/items/{item_id}/reveal", summary="Reveal one masked value (logged, with reason)")
async def reveal(
    item_id: str,
    body: RevealIn,
    request: Request,
    reviewer: ReviewerDep,
    review: ReviewDep,
    runtime: RuntimeDep,
) -> OrjsonResponse:
    row = await load_item(review, item_id)
    value = reveal_value(row, body.part, body.path, runtime.identities)
    await review.log_access(
        reviewer.name,
        "reveal",
        item_ids=[item_id],
        path=f"{body.part}:{body.path}",
        reason=body.reason,
        correlation_id=correlation_id(request),
    )
    await log_review_read(runtime, reviewer.principal, "reveal", row, value, body.reason)
    return OrjsonResponse(
        {"item_id": item_id, "part": body.part, "path": body.path, "value": value}
    )


@router.post("/bulk", summary="Set status/assignee or add a note on many items")
async def bulk(body: BulkChange, reviewer: ReviewerDep, review: ReviewDep) -> OrjsonResponse:
    ids = await selected_ids(review, body)
    changed = await review.change(
        ids, reviewer.name, status=body.status, assignee=body.assignee, note=body.note
    )
    return OrjsonResponse({"selected": len(ids), "changed": changed})


@router.post("/replay/preview", summary="Which selected items would pass validation now")
async def replay_preview(
    body: Selection, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> OrjsonResponse:
    checks = await ReplayService(runtime, review).check(await selected_ids(review, body))
    return OrjsonResponse(verdict_summary(checks))


@router.post("/replay", summary="Publish the selected items that now pass, as new events")
async def replay(
    body: Selection,
    request: Request,
    reviewer: ReviewerDep,
    review: ReviewDep,
    runtime: RuntimeDep,
) -> OrjsonResponse:
    ids = await selected_ids(review, body)
    with log_unavailable_as_problem(REPLAY_LATER):
        result = await ReplayService(runtime, review).replay(
            ids, reviewer.name, correlation_id(request)
        )
    return OrjsonResponse(
        {**verdict_summary(result.checks), "replayed": [c.as_dict() for c in result.replayed]}
    )


@router.get("/stats", summary="Rejections per day by rule, by unit, by vendor; top rules")
async def stats(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> OrjsonResponse:
    flt, _, _ = views.period(views.read_filter(dict(request.query_params)))
    body = views.statistics_view(await review.statistics(flt))
    return OrjsonResponse({"filter": views.filter_query(flt), **body})


@router.get("/stats.csv", summary="Rejections per day and rule as CSV")
async def stats_csv(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> Any:
    flt, _, _ = views.period(views.read_filter(dict(request.query_params)))
    body = views.statistics_view(await review.statistics(flt))
    return csv_response(
        "rejections-by-rule.csv",
        ["rule_id", "total", *body["days"]],
        ([r["rule_id"], r["total"], *r["by_day"]] for r in body["by_rule"]),
    )


@router.get("/completeness", summary="Which units delivered each day, and who is silent")
async def completeness(
    request: Request, reviewer: ReviewerDep, review: ReviewDep
) -> OrjsonResponse:
    _, first, last = views.period(views.read_filter(dict(request.query_params)), default_days=14)
    units = await review.completeness(first, last)
    return OrjsonResponse(views.completeness_view(units, views.day_list(first, last)))


@router.get("/completeness.csv", summary="Messages per unit and day as CSV")
async def completeness_csv(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> Any:
    _, first, last = views.period(views.read_filter(dict(request.query_params)), default_days=14)
    days = views.day_list(first, last)
    body = views.completeness_view(await review.completeness(first, last), days)
    return csv_response(
        "completeness.csv",
        ["unit", "last_delivery", *days],
        ([u["unit"], u["last_delivery"], *u["messages"]] for u in body["units"]),
    )


@router.get("/access-log", summary="Who read, exported, revealed or replayed what")
async def access_log(
    reviewer: ReviewerDep, review: ReviewDep, item_id: str | None = None
) -> OrjsonResponse:
    rows = await review.access_log(item_id=item_id)
    return OrjsonResponse(
        {
            "entries": [
                {
                    "at": r.at.isoformat(),
                    "actor": r.actor,
                    "action": r.action,
                    "item_id": r.item_id,
                    "path": r.path,
                    "reason": r.reason,
                    "item_count": r.item_count,
                }
                for r in rows
            ]
        }
    )
