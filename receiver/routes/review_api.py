"""Review API (scope ``intake:review``): rejected items with filters, detail, workflow, notes,
reveal, replay, statistics and completeness across units, as JSON (and CSV). The review pages
(:mod:`receiver.routes.review_pages`) do the same for people in a browser.

Filters are query parameters: ``unit, vendor, software, message_type, version, rule_id, level,
status, problem, from, to`` (days in Norway, inclusive; vendor and software in any case). Bulk
actions and replay take the same filter in their body, or explicit ``item_ids``, and cover every
item of the filter, in chunks; nothing is cut off silently. Every read of an item, export, reveal
and replay is written to the access log.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from receiver.deps import RuntimeDep
from receiver.person_reads import log_review_read
from receiver.problems import Problem
from receiver.responses import OrjsonResponse, csv_response
from receiver.review_session import Reviewer, ReviewerDep
from receiver.submission import log_unavailable_as_problem
from review import views
from review.masking import as_sent, reveal_value
from review.replay import REPLAY_LATER, ReplayService, ReplayTotals, verdict_summary
from statestore.review import ReviewFilter, ReviewRepository, ReviewRow, Status
from statestore.units import UnitDirectory

router = APIRouter(prefix="/v1/review", tags=["review"])

MAX_IDS = 10_000  # explicit item_ids in one request (a filter has no limit)
CHUNK = 1000  # items per transaction of a bulk change, rows per read of an export
MAX_PREVIEW_PAGE = 500  # items re-validated per replay preview page


async def get_review(runtime: RuntimeDep) -> ReviewRepository:  # async: see receiver.deps
    return ReviewRepository(runtime.engines)


ReviewDep = Annotated[ReviewRepository, Depends(get_review)]


def correlation_id(request: Request) -> str:
    return str(getattr(request.state, "correlation_id", ""))


async def log_list(
    review: ReviewRepository, reviewer: Reviewer, request: Request, shown: int, total: int
) -> None:
    """A list of rejected items was read: who, how many of how many, with which filter."""
    await review.log_access(
        reviewer.name,
        "list",
        path=str(request.url.query)[:500] or None,
        item_count=shown,
        total_count=total,
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

    item_ids: list[str] | None = Field(default=None, max_length=MAX_IDS)
    filter: dict[str, str] | None = None


class BulkChange(Selection):
    status: Status | None = None
    assignee: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=4000)
    expected: int | None = Field(
        default=None,
        ge=0,
        description="The count the caller confirmed; if the filter now matches another "
        "count, nothing is changed (409 selection_changed).",
    )


class PreviewSelection(Selection):
    page: int = Field(default=1, ge=1)
    page_size: int = Field(default=200, ge=1, le=MAX_PREVIEW_PAGE)


def selection_filter(selection: Selection) -> ReviewFilter:
    if selection.filter is None:
        raise Problem(
            422, "empty_selection", "Nothing selected", "Send item_ids or a filter (may be {})."
        )
    return views.read_filter(selection.filter)


async def change_filter(
    review: ReviewRepository,
    flt: ReviewFilter,
    actor: str,
    *,
    status: Status | None,
    assignee: str | None,
    note: str | None,
) -> tuple[int, int]:
    """Change every item of a filter, :data:`CHUNK` per transaction: (selected, changed).

    The ids are read first, so an item that leaves the filter by the change (a status filter)
    is neither skipped nor changed twice."""
    ids = [item_id async for chunk in review.id_chunks(flt, CHUNK) for item_id in chunk]
    changed = 0
    for start in range(0, len(ids), CHUNK):
        changed += await review.change(
            ids[start : start + CHUNK], actor, status=status, assignee=assignee, note=note
        )
    return len(ids), changed


def replay_totals(totals: ReplayTotals) -> dict[str, Any]:
    return {
        "checked": totals.checked,
        "counts": totals.counts,
        "replayed": [c.as_dict() for c in totals.replayed],
    }


@router.get("/items", summary="Rejected items, filtered, sorted and paged")
async def list_items(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> OrjsonResponse:
    page, _, _ = await views.search(review, dict(request.query_params))
    await log_list(review, reviewer, request, len(page.rows), page.total)
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


@router.get("/problems", summary="Rejected items grouped into problems, largest first")
async def problems(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> OrjsonResponse:
    query = dict(request.query_params)
    found = await review.problems(
        views.read_filter(query),
        page=views.read_int(query, "page", 1, 1_000_000),
        page_size=views.read_int(query, "page_size", 50, 200),
    )
    await log_list(review, reviewer, request, sum(p.items for p in found.rows), found.items)
    return OrjsonResponse(views.problems_view(found))


@router.get("/items.csv", summary="Rejected items as CSV (masked), every row of the filter")
async def export_items(
    request: Request, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> Any:
    """Streamed chunk by chunk (memory stays one chunk, whatever the filter matches):
    semicolon-separated UTF-8 with a BOM and Norwegian headers, for Norwegian Excel."""
    flt = views.read_filter(dict(request.query_params))
    total = await review.count(flt)
    await review.log_access(
        reviewer.name,
        "export",
        path=str(request.url.query)[:500] or None,
        item_count=total,
        total_count=total,
        reason="items.csv",
        correlation_id=correlation_id(request),
    )

    async def lines() -> Any:
        yield views.CSV_BOM + "".join(views.csv_lines([views.SUMMARY_HEADERS]))
        directory = UnitDirectory(runtime.engines)
        async for chunk in review.summary_chunks(flt, CHUNK):
            names = await directory.names(r.unit for r in chunk)
            yield "".join(views.csv_lines(views.summary_rows(chunk, names)))

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="avviste-elementer.csv"',
            "X-Total-Count": str(total),
        },
    )


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
    if body.item_ids is not None:
        changed = await review.change(
            body.item_ids, reviewer.name, status=body.status, assignee=body.assignee, note=body.note
        )
        return OrjsonResponse({"selected": len(body.item_ids), "changed": changed})
    flt = selection_filter(body)
    if body.expected is not None and (now := await review.count(flt)) != body.expected:
        raise Problem(
            409,
            "selection_changed",
            "The selection changed",
            f"The filter matches {now} items now, not {body.expected}: nothing was changed.",
        )
    selected, changed = await change_filter(
        review, flt, reviewer.name, status=body.status, assignee=body.assignee, note=body.note
    )
    return OrjsonResponse({"selected": selected, "changed": changed})


@router.post("/replay/preview", summary="Which selected items would pass validation now, a page")
async def replay_preview(
    body: PreviewSelection, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> OrjsonResponse:
    if body.item_ids is not None:
        ids, total = body.item_ids, len(body.item_ids)
    else:
        flt = selection_filter(body)
        total = await review.count(flt)
        start = (body.page - 1) * body.page_size
        ids = await review.ids(flt, body.page_size, offset=start)
    checks = await ReplayService(runtime, review).check(ids)
    shown_to = (body.page - 1) * body.page_size + len(ids) if body.item_ids is None else total
    return OrjsonResponse(
        {
            **verdict_summary(checks),
            "total": total,
            "page": body.page,
            "page_size": body.page_size,
            "remaining": max(0, total - shown_to),
        }
    )


@router.post("/replay", summary="Publish the selected items that now pass, as new events")
async def replay(
    body: Selection,
    request: Request,
    reviewer: ReviewerDep,
    review: ReviewDep,
    runtime: RuntimeDep,
) -> OrjsonResponse:
    service = ReplayService(runtime, review)
    with log_unavailable_as_problem(REPLAY_LATER):
        if body.item_ids is not None:
            totals = ReplayTotals()
            totals.add(await service.replay(body.item_ids, reviewer.name, correlation_id(request)))
        else:
            totals = await service.replay_filter(
                selection_filter(body), reviewer.name, correlation_id(request)
            )
    return OrjsonResponse(replay_totals(totals))


@router.get("/stats", summary="Rejections per day by rule, by unit, by vendor; top rules")
async def stats(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> OrjsonResponse:
    flt, _, _ = views.period(views.read_filter(dict(request.query_params)))
    body = views.statistics_view(await review.statistics(flt))
    return OrjsonResponse({"filter": views.filter_query(flt), **body})


@router.get("/stats.csv", summary="Rejected items per day and rule as CSV")
async def stats_csv(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> Any:
    flt, _, _ = views.period(views.read_filter(dict(request.query_params)))
    body = views.statistics_view(await review.statistics(flt))
    return csv_response(
        "avviste-per-regel.csv",
        ["Regel", "Regeltekst", "Avviste elementer", *(views.day_text(d) for d in body["days"])],
        ([r["rule_id"], r["title"], r["total"], *r["by_day"]] for r in body["by_rule"]),
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
        "fullstendighet.csv",
        ["Enhet", "Siste levering", *(views.day_text(d) for d in days)],
        (
            [
                u["unit"],
                views.day_text(u["last_delivery"]) if u["last_delivery"] else "",
                *u["messages"],
            ]
            for u in body["units"]
        ),
    )


@router.get("/access-log", summary="Who read, exported, revealed or replayed what, paged")
async def access_log(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> OrjsonResponse:
    query = dict(request.query_params)
    found = await views.access_page(review, query)
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
                    "total_count": r.total_count,
                }
                for r in found["entries"]
            ],
            "total": found["total"],
            "page": found["page"],
            "pages": found["pages"],
        }
    )
