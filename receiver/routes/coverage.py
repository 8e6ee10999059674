"""National coverage: reporting obligations (who must report which message types from when; scope
``intake:admin`` to change them, ``intake:review`` to read) and coverage against them, per day,
week or month, as JSON and CSV (``intake:review``). See :mod:`statestore.obligations`."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, model_validator

from receiver import review_html
from receiver.deps import Admin, RuntimeDep
from receiver.problems import Problem
from receiver.responses import OrjsonResponse, csv_response
from receiver.review_session import ReviewerDep
from receiver.routes.review_pages import page
from review import views
from schemas.events import CARE_TIMEZONE
from statestore.obligations import Coverage, MissingUnit, Obligation, ObligationRepository
from validators.identifiers import check_orgnr

router = APIRouter(prefix="/v1", tags=["coverage"])
pages = APIRouter(prefix="/review", include_in_schema=False)

MAX_DAYS = 366
MUNICIPALITIES = "kommunenummer"  # the code list of Statistics Norway's classification 131


class ObligationIn(BaseModel):
    unit: str = Field(pattern=r"^\d{9}$", description="The unit that must report (orgnr).")
    message_type: str = Field(max_length=64)
    valid_from: date
    valid_to: date | None = Field(default=None, description="The last day it holds.")
    kommune_nr: str | None = Field(
        default=None, pattern=r"^\d{4}$", description="The municipality it reports for."
    )
    replaces: int | None = Field(default=None, description="An obligation this one ends.")

    @model_validator(mode="after")
    def _ordered(self) -> ObligationIn:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self


def _as_dict(o: Obligation) -> dict[str, Any]:
    return {
        "id": o.id,
        "unit": o.unit,
        "kommune_nr": o.kommune_nr,
        "message_type": o.message_type,
        "valid_from": o.valid_from.isoformat(),
        "valid_to": o.valid_to.isoformat() if o.valid_to else None,
        "recorded_at": o.recorded_at.isoformat(),
        "recorded_by": o.recorded_by,
        "ended_at": o.ended_at.isoformat() if o.ended_at else None,
        "ended_by": o.ended_by,
    }


@router.get("/obligations", summary="Who must report which message types from when")
async def list_obligations(
    reviewer: ReviewerDep,
    runtime: RuntimeDep,
    message_type: str | None = None,
    history: bool = False,
) -> OrjsonResponse:
    found = await ObligationRepository(runtime.engines).find(
        message_type=message_type, include_ended=history
    )
    return OrjsonResponse({"obligations": [_as_dict(o) for o in found]})


@router.post("/obligations", summary="Add an obligation (or replace one)", status_code=201)
async def add_obligation(body: ObligationIn, admin: Admin, runtime: RuntimeDep) -> OrjsonResponse:
    if check_orgnr(body.unit) is not None:
        raise Problem(
            422, "invalid_unit", "Not an organisation number", f"{body.unit} fails mod 11."
        )
    if body.message_type not in {m.message_type for m in runtime.catalogue}:
        raise Problem(
            422, "unknown_message_type", "Unknown message type", f"No model {body.message_type}."
        )
    added = await ObligationRepository(runtime.engines).add(
        body.unit,
        body.message_type,
        body.valid_from,
        valid_to=body.valid_to,
        kommune_nr=body.kommune_nr,
        actor=admin.actor or admin.client_id or "admin",
        replaces=body.replaces,
    )
    return OrjsonResponse(_as_dict(added), status_code=201)


@router.delete("/obligations/{obligation_id}", summary="End an obligation (kept in the history)")
async def end_obligation(obligation_id: int, admin: Admin, runtime: RuntimeDep) -> OrjsonResponse:
    ended = await ObligationRepository(runtime.engines).end(
        obligation_id, admin.actor or admin.client_id or "admin"
    )
    if not ended:
        raise Problem(404, "unknown_obligation", "No such open obligation", f"{obligation_id}")
    return OrjsonResponse({"id": obligation_id, "ended": True})


async def read_coverage(
    runtime: Any,
    message_type: str,
    first: date | None,
    last: date | None,
    period: str,
    classification: date | None = None,
    silent_days: int = 3,
) -> Coverage:
    """Coverage of a message type; with ``classification``, municipalities counted as the
    municipality classification in force on that day has them (older numbers mapped through its
    changes; a split municipality counts as the first of its successors)."""
    today = datetime.now(CARE_TIMEZONE).date()
    last = last or today
    first = first or last - timedelta(days=29)
    if first > last or (last - first).days >= MAX_DAYS:
        raise Problem(
            422, "invalid_period", "Invalid period", f"from..to must be 1 to {MAX_DAYS} days."
        )
    if message_type not in {m.message_type for m in runtime.catalogue}:
        raise Problem(
            422, "unknown_message_type", "Unknown message type", f"No model {message_type}."
        )
    return await ObligationRepository(runtime.engines).coverage(
        message_type,
        first,
        last,
        period,  # type: ignore[arg-type]
    )


def coverage_view(coverage: Coverage) -> dict[str, Any]:
    return {
        "message_type": coverage.message_type,
        "period": coverage.period,
        "periods": [
            {
                "from": p.start.isoformat(),
                "to": p.end.isoformat(),
                "expected_units": p.expected_units,
                "delivered_units": p.delivered_units,
                "unit_coverage": p.unit_coverage,
                "expected_municipalities": p.expected_municipalities,
                "delivered_municipalities": p.delivered_municipalities,
                "municipality_coverage": p.municipality_coverage,
            }
            for p in coverage.periods
        ],
        "missing": [_unit(m) for m in coverage.missing],
        "silent": [_unit(m) for m in coverage.silent],
    }


def _unit(m: MissingUnit) -> dict[str, Any]:
    return {
        "unit": m.unit,
        "name": m.name,
        "kommune_nr": m.kommune_nr,
        "last_delivery": m.last_delivery.isoformat() if m.last_delivery else None,
    }


PeriodQuery = Annotated[Literal["day", "week", "month"], Query()]


async def asked_coverage(
    reviewer: ReviewerDep,
    runtime: RuntimeDep,
    message_type: str,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
    period: PeriodQuery = "day",
    classification: Annotated[
        date | None, Query(description="Count municipalities as of this classification day.")
    ] = None,
    silent_days: Annotated[int, Query(ge=1, le=366)] = 3,
) -> Coverage:
    """The coverage a request asks for (the query both the JSON and the CSV take)."""
    return await read_coverage(
        runtime, message_type, start, end, period, classification, silent_days
    )


AskedCoverage = Annotated[Coverage, Depends(asked_coverage)]


@router.get("/coverage", summary="Who delivered against who must, per day, week or month")
async def coverage(found: AskedCoverage) -> OrjsonResponse:
    return OrjsonResponse(coverage_view(found))


@router.get("/coverage.csv", summary="Coverage per period as CSV (for Norwegian Excel)")
async def coverage_csv(found: AskedCoverage) -> Any:
    return csv_response(
        "dekning.csv",
        ["Fra", "Til", "Forventede enheter", "Leverte enheter", "Dekning enheter (%)",
         "Forventede kommuner", "Leverte kommuner", "Dekning kommuner (%)"],
        (
            [views.day_text(p.start), views.day_text(p.end), p.expected_units, p.delivered_units,
             _percent(p.unit_coverage), p.expected_municipalities, p.delivered_municipalities,
             _percent(p.municipality_coverage)]
            for p in found.periods
        ),
    )  # fmt: skip


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f}".replace(".", ",")


@pages.get("/coverage")
async def coverage_page(request: Request, reviewer: ReviewerDep, runtime: RuntimeDep) -> Any:
    """Coverage for quality staff: a chart over time and who is missing, with names."""
    query = dict(request.query_params)
    types = sorted({m.message_type for m in runtime.catalogue})
    message_type = query.get("message_type") or types[0]
    period = query.get("period") or "day"
    if period not in ("day", "week", "month"):
        raise Problem(422, "invalid_query", "Invalid query parameter", "period: day, week, month")
    flt = views.read_filter({k: query[k] for k in ("from", "to") if query.get(k)})
    found = await read_coverage(runtime, message_type, flt.day_from, flt.day_to, period)
    labels = [views.day_text(p.start)[:5] for p in found.periods]
    chart = review_html.stacked_days(
        labels,
        [
            ("Leverte", [p.delivered_units for p in found.periods]),
            ("Manglet", [p.expected_units - p.delivered_units for p in found.periods]),
        ],
        title=f"Enheter med rapporteringsplikt for {message_type} per periode: leverte og manglet",
        chart_id="coverage-chart",
    )
    first, last = found.periods[0].start, found.periods[-1].end
    csv_query = urlencode(
        {"message_type": message_type, "period": period, "from": first, "to": last}
    )
    return page(
        request,
        "coverage.html",
        reviewer,
        {
            "message_types": types,
            "message_type": message_type,
            "period": period,
            "first": first,
            "last": last,
            "latest": found.periods[-1],
            "missing": found.missing,
            "chart": chart,
            "csv_link": f"/v1/coverage.csv?{csv_query}",
        },
    )
