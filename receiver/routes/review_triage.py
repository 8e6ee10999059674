"""Review pages that act on many items at once: triage by problem (the landing page), bulk changes
over a selection or a whole filter (with a confirmation naming the count), and replay after a fix
(a paged preview, then every item of the filter, chunk by chunk).

Nothing here stops at a hidden limit: a filter of 20,000 items is changed, previewed and
replayed whole, and the pages say how many there are and how many are left to look at.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from receiver.deps import RuntimeDep
from receiver.problems import Problem
from receiver.review_session import ReviewerDep
from receiver.routes.review_api import (
    ReviewDep,
    change_filter,
    correlation_id,
    log_list,
)
from receiver.routes.review_pages import filter_context, form_filter, items_url, page
from receiver.submission import log_unavailable_as_problem
from review import views
from review.replay import REPLAY_LATER, ReplayService, ReplayTotals, verdict_summary
from statestore.review import STATUSES

router = APIRouter(prefix="/review", include_in_schema=False)

PREVIEW_PAGE = 100  # items re-validated per page of the replay preview
MAX_SELECTED = 1000  # ticked boxes in one form (a page shows at most 200)


@router.get("")
async def home() -> Response:
    return RedirectResponse("/review/problems", status_code=303)


@router.get("/problems")
async def problems(
    request: Request, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> HTMLResponse:
    query = dict(request.query_params)
    flt = views.read_filter(query)
    found = await review.problems(flt, page=views.read_int(query, "page", 1, 1_000_000))
    await log_list(review, reviewer, request, sum(p.items for p in found.rows), found.items)
    return page(
        request,
        "problems.html",
        reviewer,
        {
            **await filter_context(review, runtime, flt),
            "found": found,
            "problems": views.problems_view(found)["problems"],
        },
    )


# -- bulk changes -------------------------------------------------------------------------------


@router.post("/bulk")
async def bulk(
    request: Request, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> Response:
    """Ticked items are changed at once; a whole filter first asks for a confirmation that
    names the count, and is changed only if the filter still matches that many."""
    form = await request.form()
    flt = views.read_filter(form_filter(form))
    status = str(form.get("set_status", "")) or None
    if status is not None and status not in STATUSES:
        raise Problem(422, "invalid_status", "Ukjent status", f"{status!r} er ikke en status.")
    assignee = str(form.get("set_assignee", "")).strip()[:200] or None
    note = str(form.get("set_note", "")).strip()[:4000] or None
    if not (status or assignee or note):
        return RedirectResponse(items_url(flt, notice="Ingen endring valgt."), status_code=303)
    if form.get("scope") != "filter":
        ids = [str(v) for v in form.getlist("item_ids")]
        if len(ids) > MAX_SELECTED:
            raise Problem(
                422,
                "too_many_selected",
                "For mange valgt",
                f"Velg høyst {MAX_SELECTED} elementer, eller endre alle i utvalget.",
            )
        changed = await review.change(
            ids, reviewer.name, status=status, assignee=assignee, note=note
        )
        return RedirectResponse(
            items_url(flt, notice=f"{changed} elementer oppdatert."), status_code=303
        )
    total = await review.count(flt)
    confirmed = str(form.get("confirmed", ""))
    if not confirmed:
        return page(
            request,
            "bulk_confirm.html",
            reviewer,
            {
                **await filter_context(review, runtime, flt),
                "total": total,
                "set_status": status,
                "set_assignee": assignee,
                "set_note": note,
                "back": str(form.get("back", "")) or items_url(flt),
            },
        )
    if confirmed != str(total):
        notice = f"Utvalget har endret seg (nå {total}, ikke {confirmed}): ingenting ble endret."
        return RedirectResponse(items_url(flt, notice=notice), status_code=303)
    selected, changed = await change_filter(
        review, flt, reviewer.name, status=status, assignee=assignee, note=note
    )
    notice = f"{changed} elementer oppdatert."
    if changed != selected:
        notice += f" {selected - changed} var borte før endringen."
    return RedirectResponse(items_url(flt, notice=notice), status_code=303)


# -- replay -------------------------------------------------------------------------------------


@router.get("/replay")
async def replay_preview(
    request: Request, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> HTMLResponse:
    query = dict(request.query_params)
    flt = views.read_filter(query)
    number = views.read_int(query, "page", 1, 1_000_000)
    total = await review.count(flt)
    ids = await review.ids(flt, PREVIEW_PAGE, offset=(number - 1) * PREVIEW_PAGE)
    checks = await ReplayService(runtime, review).check(ids)
    shown_to = (number - 1) * PREVIEW_PAGE + len(ids)
    return page(
        request,
        "replay.html",
        reviewer,
        {
            **await filter_context(review, runtime, flt),
            "summary": verdict_summary(checks),
            "checks": checks,
            "total": total,
            "preview_page": number,
            "pages": max(1, -(-total // PREVIEW_PAGE)),
            "first": (number - 1) * PREVIEW_PAGE + 1 if ids else 0,
            "last": shown_to,
            "remaining": max(0, total - shown_to),
            "result": None,
        },
    )


@router.post("/replay")
async def replay_run(
    request: Request, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> HTMLResponse:
    form = await request.form()
    flt = views.read_filter(form_filter(form))
    with log_unavailable_as_problem(REPLAY_LATER):
        totals: ReplayTotals = await ReplayService(runtime, review).replay_filter(
            flt, reviewer.name, correlation_id(request)
        )
    return page(
        request,
        "replay.html",
        reviewer,
        {
            **await filter_context(review, runtime, flt),
            "summary": {"counts": totals.counts},
            "checks": totals.replayed[:PREVIEW_PAGE],
            "total": totals.checked,
            "result": totals,
        },
    )
