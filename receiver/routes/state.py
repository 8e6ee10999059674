"""Register data for the register's own staff (scope ``intake:state``): an object's state now,
as of a date, or as the register knew it at a time; and point-in-time statistics."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from consumers.fold import FOLDS
from receiver.deps import RuntimeDep, StateReader
from receiver.person_reads import log_person_reads
from receiver.problems import Problem, check_day
from receiver.responses import OrjsonResponse
from schemas.catalogue import MessageModel
from schemas.events import CARE_TIMEZONE
from statestore.projection import ObjectView

router = APIRouter(prefix="/v1", tags=["register data"])


def end_of_day(day: date) -> datetime:
    """The first instant after ``day`` in Norway: "as of D" includes all of D."""
    return datetime.combine(day + timedelta(days=1), time(0), CARE_TIMEZONE)


def _model(runtime: RuntimeDep, message_type: str) -> MessageModel:
    models = [m for m in runtime.catalogue if m.message_type == message_type]
    if not models:
        raise Problem(
            404,
            "unknown_message_type",
            "Unknown message type",
            f"{message_type} is not published; see GET /v1/message-types.",
        )
    return max(models, key=lambda m: m.version)


def _object(view: ObjectView) -> dict[str, Any]:
    return {
        "unit": view.unit,
        "message_type": view.message_type,
        "object_id": view.object_id,
        "version": view.version,
        "state": view.state,
        "deleted": view.deleted,
        "event_count": view.event_count,
        "last_event_id": view.last_event_id,
        "valid_time": view.valid_time.isoformat(),
        "clinical_time": view.clinical_time,
        "context": view.context,
    }


@router.get("/state/{message_type}/{object_id}", summary="An object's last-known state")
async def get_state(
    message_type: str,
    object_id: str,
    runtime: RuntimeDep,
    reader: StateReader,
    unit: Annotated[str, Query(pattern=r"^\d{9}$", description="The reporting unit.")],
    as_of: Annotated[date | None, Query(description="State on this date (valid time).")] = None,
    known_at: Annotated[
        datetime | None, Query(description="As the register knew it then (recorded time).")
    ] = None,
    purpose: Annotated[
        str | None, Query(max_length=500, description="Why: kept in the person access log.")
    ] = None,
) -> OrjsonResponse:
    model = _model(runtime, message_type)
    check_day(as_of, "as_of")
    if known_at is not None and known_at.tzinfo is None:
        raise Problem(422, "invalid_request", "known_at needs a time zone offset")
    view = await runtime.state.state_at(
        unit,
        message_type,
        object_id,
        FOLDS[model.fold],
        valid_before=end_of_day(as_of) if as_of else None,
        known_at=known_at,
    )
    if view is None:
        raise Problem(
            404,
            "not_found",
            "No such object",
            f"No {message_type} {object_id} for {unit} at that time.",
        )
    await log_person_reads(
        runtime, reader, "intake:state", "state", message_type, object_id, view.state, purpose
    )
    body = _object(view)
    body["as_of"] = as_of.isoformat() if as_of else None
    body["known_at"] = known_at.isoformat() if known_at else None
    return OrjsonResponse(body)


@router.get("/stats/{message_type}", summary="Point-in-time statistics")
async def get_stats(
    message_type: str,
    runtime: RuntimeDep,
    _reader: StateReader,
    as_of: Annotated[date | None, Query(description="Objects as they stood on this date.")] = None,
    group_by: Annotated[
        str, Query(description="Comma-separated dimensions, e.g. kommuneNr,tjenesteType.")
    ] = "",
    status: Annotated[
        str | None, Query(description="IPLOS: only services in this status (e.g. active).")
    ] = None,
    unit: Annotated[str | None, Query(pattern=r"^\d{9}$")] = None,
) -> OrjsonResponse:
    model = _model(runtime, message_type)
    check_day(as_of, "as_of")
    names = [n.strip() for n in group_by.split(",") if n.strip()]
    unknown = [n for n in names if n not in model.dimensions]
    if unknown:
        raise Problem(
            422,
            "unknown_dimension",
            "Unknown dimension",
            f"Cannot group {message_type} by {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(model.dimensions))}.",
        )
    if status is not None and "tjenesteStatus" not in model.dimensions:
        raise Problem(422, "unknown_dimension", "status applies to IPLOS services only")
    day = as_of or date.today()
    rows = await runtime.state.stats(
        message_type,
        at=end_of_day(day),
        status=status,
        unit=unit,
        group_by=[(n, *model.dimensions[n]) for n in names],
    )
    return OrjsonResponse(
        {
            "message_type": message_type,
            "as_of": day.isoformat(),
            "group_by": names,
            "status": status,
            "rows": rows,
            "total": sum(r["count"] for r in rows),
        }
    )
