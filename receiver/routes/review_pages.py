"""Review pages for quality staff (Norwegian, server-rendered with Jinja2, usable without
JavaScript): rejected items, item detail, workflow, replay, statistics, completeness, access log.

They share the review API's repository, views and replay service; forms post back here and
redirect (post/redirect/get), except a reveal, whose value is shown once and never put in a URL.
Signing in and out is :mod:`receiver.routes.review_signin`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from receiver import review_html
from receiver.deps import RuntimeDep
from receiver.person_reads import log_review_read
from receiver.problems import Problem
from receiver.review_session import (
    NotSignedIn,
    Reviewer,
    ReviewerDep,
    signed_in,
)
from receiver.routes.review_api import (
    ReviewDep,
    correlation_id,
    load_item,
    log_list,
)
from review import views
from review.masking import as_sent, resolve, reveal_value
from statestore.review import STATUSES, ReviewFilter, ReviewRepository
from statestore.units import UnitDirectory

router = APIRouter(prefix="/review", include_in_schema=False)
templates = Jinja2Templates(directory=str(resources.files("receiver") / "templates"))
templates.env.globals.update(
    STATUS_LABELS=views.STATUS_LABELS,
    RECEIPT_STATUS_LABELS=views.RECEIPT_STATUS_LABELS,
    LEVEL_LABELS=views.LEVEL_LABELS,
    STATUSES=STATUSES,
    LEVELS=views.LEVELS,
    ACCESS_ACTIONS=views.ACCESS_ACTIONS,
    rule_title=views.rule_title,
    describe=views.describe_access,
)


def _link(path: str, query: Mapping[str, str], **extra: Any) -> str:
    """``path`` with the current filter and ``extra`` (which wins) as its query."""
    merged = {**query, **{k: str(v) for k, v in extra.items()}}
    return f"{path}?{urlencode(merged)}" if merged else path


templates.env.filters["when"] = views.when
templates.env.filters["day"] = views.day_text
templates.env.globals["link"] = _link


def install(app: FastAPI) -> None:
    """Static files, and Problems on pages answered as pages (sign-in redirects)."""
    app.mount(
        "/review/static",
        StaticFiles(directory=str(resources.files("receiver") / "static")),
        name="review-static",
    )
    answer_api = app.exception_handlers[Problem]

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        if not request.url.path.startswith("/review/") and request.url.path != "/review":
            answer = answer_api(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        if isinstance(exc, NotSignedIn):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/review/login?{urlencode({'next': target})}", status_code=303)
        return templates.TemplateResponse(
            request,
            "review/error.html",
            {"problem": exc, "reviewer": await signed_in(request)},
            status_code=exc.status,
            headers=exc.headers,
        )

    app.add_exception_handler(Problem, on_problem)


def page(
    request: Request, name: str, reviewer: Reviewer | None, context: Mapping[str, Any]
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, f"review/{name}", {"reviewer": reviewer, **context}
    )
    # Pages hold personal data: never cached, never framed.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'"
    )
    return response


# -- items --------------------------------------------------------------------------------------


@router.get("/items")
async def items(
    request: Request, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> HTMLResponse:
    query = dict(request.query_params)
    found, sort, descending = await views.search(review, query)
    await log_list(review, reviewer, request, len(found.rows), found.total)
    return page(
        request,
        "items.html",
        reviewer,
        {
            **await filter_context(review, runtime, views.read_filter(query)),
            "page": found,
            "rows": [views.summary(r) for r in found.rows],
            "unit_names": await _unit_names(runtime, (r.unit for r in found.rows)),
            "sort": sort,
            "descending": descending,
            "notice": query.get("notice"),
            "bulk": query.get("bulk"),
        },
    )


@router.get("/items/{item_id}")
async def item(
    item_id: str,
    request: Request,
    reviewer: ReviewerDep,
    review: ReviewDep,
    runtime: RuntimeDep,
) -> HTMLResponse:
    return await _item_page(request, reviewer, review, runtime, item_id, revealed={})


@router.post("/items/{item_id}/status")
async def change_status(
    item_id: str, request: Request, reviewer: ReviewerDep, review: ReviewDep
) -> Response:
    form = await request.form()
    await load_item(review, item_id)
    status = str(form.get("status", ""))
    if status not in STATUSES:
        raise Problem(422, "invalid_status", "Unknown status", f"{status!r} is not a status.")
    await review.change(
        [item_id],
        reviewer.name,
        status=status,
        assignee=str(form.get("assignee", "")).strip()[:200],
    )
    return RedirectResponse(f"/review/items/{item_id}#workflow", status_code=303)


@router.post("/items/{item_id}/notes")
async def add_note(
    item_id: str, request: Request, reviewer: ReviewerDep, review: ReviewDep
) -> Response:
    form = await request.form()
    await load_item(review, item_id)
    text = str(form.get("text", "")).strip()[:4000]
    if text:
        await review.change([item_id], reviewer.name, note=text)
    return RedirectResponse(f"/review/items/{item_id}#history", status_code=303)


@router.post("/items/{item_id}/reveal")
async def reveal(
    item_id: str,
    request: Request,
    reviewer: ReviewerDep,
    review: ReviewDep,
    runtime: RuntimeDep,
) -> HTMLResponse:
    form = await request.form()
    row = await load_item(review, item_id)
    pointer = str(form.get("path", ""))[:500]
    reason = str(form.get("reason", "")).strip()[:500]
    if len(reason) < 3:
        raise Problem(
            422, "reason_required", "Begrunnelse mangler", "Skriv hvorfor du må se verdien."
        )
    value = reveal_value(row, "item", pointer, runtime.identities)
    await review.log_access(
        reviewer.name,
        "reveal",
        item_ids=[item_id],
        path=f"item:{pointer}",
        reason=reason,
        correlation_id=correlation_id(request),
    )
    await log_review_read(runtime, reviewer.principal, "reveal", row, value, reason)
    return await _item_page(request, reviewer, review, runtime, item_id, revealed={pointer: value})


async def _item_page(
    request: Request,
    reviewer: Reviewer,
    review: ReviewRepository,
    runtime: Any,
    item_id: str,
    *,
    revealed: dict[str, Any],
) -> HTMLResponse:
    row = await load_item(review, item_id)
    await review.log_access(
        reviewer.name, "view", item_ids=[item_id], correlation_id=correlation_id(request)
    )
    await log_review_read(
        runtime, reviewer.principal, "view", row, as_sent(row, runtime.identities), None
    )
    detail = views.detail(runtime, row)
    offending = {
        _nearest(row.item, f["item_pointer"])
        for f in detail["findings"]
        if f["item_pointer"] is not None
    }
    receipt = await runtime.receipts.get(row.receipt_id)
    return page(
        request,
        "item.html",
        reviewer,
        {
            "item": detail,
            "item_html": review_html.json_html(
                detail["item"],
                offending=offending,
                masked=detail["masked_paths"],
                revealed=revealed,
            ),
            "block_html": review_html.json_html(detail["block"], offending=(), masked=()),
            "revealed": revealed,
            "receipt": receipt,
            "history": await review.history(item_id),
            "resubmitted_at": await review.resubmitted(row),
            "unit_recent": [
                views.summary(r) for r in await review.recent_for_unit(row.unit, exclude=item_id)
            ],
            "access": await review.access_log(item_id=item_id, limit=20),
            "assignees": await review.assignees(),
            "unit_names": await _unit_names(runtime, [row.unit]),
        },
    )


# -- statistics, completeness, access log -----------------------------------------------------


@router.get("/stats")
async def stats(
    request: Request, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> HTMLResponse:
    flt, _, _ = views.period(views.read_filter(dict(request.query_params)))
    body = views.statistics_view(await review.statistics(flt))
    top = body["by_rule"][:7]
    rest = body["by_rule"][7:]
    series = [(f"{r['rule_id']} {r['title']}".strip(), r["by_day"]) for r in top]
    if rest:
        series.append(
            ("Andre regler", [sum(r["by_day"][i] for r in rest) for i in range(len(body["days"]))])
        )
    shares = []
    for rejected, received in zip(body["rejected_by_day"], body["received_by_day"], strict=True):
        share = rejected["rejected"] / received["items"] if received["items"] else None
        shares.append({**rejected, "received": received["items"], "share": share})
    received_total = sum(t["received"] for t in shares)
    rejected_total = sum(t["rejected"] for t in shares)
    days = [views.day_text(d) for d in body["days"]]
    return page(
        request,
        "stats.html",
        reviewer,
        {
            **await filter_context(review, runtime, flt),
            "stats": body,
            "unit_names": await _unit_names(runtime, (r["unit"] for r in body["by_unit"])),
            "trend": shares,
            "received_total": received_total,
            "rejected_total": rejected_total,
            "share_total": rejected_total / received_total if received_total else None,
            "chart_days": review_html.stacked_days(
                days,
                series,
                title="Avviste elementer per dag og regel (et element med feil i flere regler "
                "telles under hver av dem)",
                chart_id="chart-by-day",
            ),
            "chart_trend": review_html.stacked_days(
                days,
                [
                    ("Avviste", [t["rejected"] for t in shares]),
                    ("Godtatte", [max(0, t["received"] - t["rejected"]) for t in shares]),
                ],
                title="Mottatte elementer per dag, avviste og godtatte (hvert element én gang)",
                chart_id="chart-trend",
                height=160,
            ),
            "chart_units": review_html.bar_chart(
                [(r["unit"], r["rejected"]) for r in body["by_unit"][:15]],
                title="Avviste elementer per enhet (hvert element én gang)",
                chart_id="chart-by-unit",
                width=380,
            ),
            "chart_vendors": review_html.bar_chart(
                [(r["vendor"] or "(ukjent)", r["rejected"]) for r in body["by_vendor"][:15]],
                title="Avviste elementer per leverandør (hvert element én gang)",
                chart_id="chart-by-vendor",
                width=380,
            ),
            "chart_rules": review_html.bar_chart(
                [(r["rule_id"], r["rejected"]) for r in body["top_rules"]],
                title="Avviste elementer per regel (et element kan telle under flere regler)",
                chart_id="chart-top-rules",
                width=380,
            ),
        },
    )


@router.get("/completeness")
async def completeness(
    request: Request, reviewer: ReviewerDep, review: ReviewDep, runtime: RuntimeDep
) -> HTMLResponse:
    flt, first, last = views.period(views.read_filter(dict(request.query_params)), default_days=14)
    days = views.day_list(first, last)
    body = views.completeness_view(await review.completeness(first, last), days)
    return page(
        request,
        "completeness.html",
        reviewer,
        {
            **await filter_context(review, runtime, flt),
            "completeness": body,
            "unit_names": await _unit_names(runtime, (u["unit"] for u in body["units"])),
        },
    )


@router.get("/access-log")
async def access_log(request: Request, reviewer: ReviewerDep, review: ReviewDep) -> HTMLResponse:
    query = dict(request.query_params)
    found = await views.access_page(review, query)
    return page(
        request,
        "access_log.html",
        reviewer,
        {
            **found,
            "actors": await review.access_actors(),
            "query": {k: v for k, v in query.items() if k in ("item_id", "actor", "action") and v},
        },
    )


# -- helpers ------------------------------------------------------------------------------------


async def filter_context(
    review: ReviewRepository, runtime: Any, flt: ReviewFilter
) -> dict[str, Any]:
    query = views.filter_query(flt)
    return {
        "filter": flt,
        "query": query,
        "query_string": urlencode(query),
        "message_types": sorted({m.message_type for m in runtime.catalogue}),
        "rule_ids": views.rule_ids(),
        "suggestions": await review.suggestions(),
        "now": datetime.now(UTC),
    }


async def _unit_names(runtime: Any, units: Iterable[str]) -> dict[str, str]:
    """The directory's names of these units (statestore/units.py); a unit not in it has none."""
    return await UnitDirectory(runtime.engines).names(units)


FILTER_FIELDS = (
    "unit", "vendor", "software", "message_type", "version", "rule_id", "level", "status",
    "problem", "from", "to",
)  # fmt: skip


def form_filter(form: FormData) -> dict[str, str]:
    """The filter a form carried along in hidden fields (same names as the query)."""
    return {name: str(form.get(name, "")) for name in FILTER_FIELDS}


def items_url(flt: ReviewFilter, **extra: str) -> str:
    return "/review/items?" + urlencode({**views.filter_query(flt), **extra})


def _nearest(value: Any, pointer: str) -> str:
    """The pointer, or its nearest ancestor that exists (a missing field marks its object)."""
    while pointer:
        try:
            resolve(value, pointer)
            return pointer
        except KeyError:
            pointer = pointer.rsplit("/", 1)[0]
    return pointer
