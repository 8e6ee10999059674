"""A unit's own view of its deliveries: the calendar, gaps in its message sequence numbers, and
the daily error list (JSON or CSV), like LPR3's accumulated error list."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from receiver.deps import Reporter, RuntimeDep
from receiver.problems import Problem, check_day
from receiver.responses import OrjsonResponse
from schemas.events import CARE_TIMEZONE
from statestore.receipts import Completeness

router = APIRouter(prefix="/v1", tags=["completeness"])

MAX_DAYS = 366
MAX_LISTED_GAPS = 1000
ERROR_COLUMNS = (
    "received_at",
    "receipt_id",
    "message_type",
    "version",
    "item_index",
    "object_id",
    "item_status",
    "rule_id",
    "severity",
    "level",
    "path",
    "message_nb",
    "message_en",
    "codelist_version",
)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(0), CARE_TIMEZONE)


def sequence_gaps(numbers: list[int]) -> dict[str, object]:
    """Missing and repeated numbers between the first and the last one received."""
    if not numbers:
        return {"first": None, "last": None, "missing_count": 0, "missing": [], "duplicates": []}
    seen = set(numbers)
    duplicates = (
        sorted({n for n in numbers if numbers.count(n) > 1}) if len(seen) < len(numbers) else []
    )
    missing = [n for n in range(numbers[0], numbers[-1] + 1) if n not in seen]
    return {
        "first": numbers[0],
        "last": numbers[-1],
        "missing_count": len(missing),
        "missing": missing[:MAX_LISTED_GAPS],
        "duplicates": duplicates,
    }


@router.get("/completeness", summary="The unit's delivery calendar and sequence gaps")
async def completeness(
    principal: Reporter,
    runtime: RuntimeDep,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> OrjsonResponse:
    check_day(start, "from")
    check_day(end, "to")
    last = end or datetime.now(CARE_TIMEZONE).date()
    first = start or last - timedelta(days=29)
    if first > last or (last - first).days >= MAX_DAYS:
        raise Problem(
            422,
            "invalid_period",
            "Invalid period",
            f"from must not be after to, and at most {MAX_DAYS} days apart.",
        )
    repo = Completeness(runtime.engines)
    days = await repo.calendar(
        principal.unit, _start_of(first), _start_of(last + timedelta(days=1))
    )
    delivered = {d.day for d in days}
    all_days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return OrjsonResponse(
        {
            "unit": principal.unit,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "days": [
                {
                    "date": d.day,
                    "message_type": d.message_type,
                    "messages": d.messages,
                    "items": d.items,
                    "accepted": d.accepted,
                    "rejected": d.rejected,
                }
                for d in days
            ],
            "days_without_delivery": [d for d in all_days if d not in delivered],
            "sequence": sequence_gaps(await repo.sequences(principal.unit)),
        }
    )


@router.get("/errors", summary="Every finding on the unit's messages of one day")
async def daily_errors(
    principal: Reporter,
    runtime: RuntimeDep,
    day: Annotated[date | None, Query(alias="date", description="Default: yesterday.")] = None,
    output: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    check_day(day, "date")
    chosen = day or datetime.now(CARE_TIMEZONE).date() - timedelta(days=1)
    rows = await Completeness(runtime.engines).findings(
        principal.unit, _start_of(chosen), _start_of(chosen + timedelta(days=1))
    )
    if output == "json":
        return OrjsonResponse(
            {"unit": principal.unit, "date": chosen.isoformat(), "findings": rows}
        )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ERROR_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    filename = f"errors-{principal.unit}-{chosen.isoformat()}.csv"
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
