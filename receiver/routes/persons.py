"""Persons, by pseudonym (docs/privacy.md): the person timeline for register staff, one
re-identification at a time for the identity scope, and a citizen's insight into their own data.
Every answer here is logged in the person access log before it is given."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from consumers.fold import FOLDS
from identity.keys import SealedValueError
from identity.pseudonyms import pseudonym_of
from receiver.deps import Admin, Citizen, IdentityReader, RuntimeDep, StateReader
from receiver.person_reads import log_person_reads
from receiver.problems import Problem, check_day, store_failures_as_problems
from receiver.responses import OrjsonResponse
from receiver.routes.state import end_of_day
from statestore.persons import PSEUDONYM, PersonRead

router = APIRouter(prefix="/v1", tags=["persons"])

# Which register a message type reports to (the patient register for specialist care; the
# municipal register for the rest).
NPR_TYPES = frozenset({"NPR_Kontakt"})
INSIGHT_READS = 1000  # reads listed in a citizen's insight, newest first


def _register(message_type: str) -> str:
    return "NPR" if message_type in NPR_TYPES else "KPR"


def _checked(pseudonym: str) -> str:
    if not PSEUDONYM.fullmatch(pseudonym):
        raise Problem(
            422,
            "invalid_pseudonym",
            "Not a pseudonym",
            "A pseudonym looks like p1-<32 hex digits>.",
        )
    return pseudonym


@router.get(
    "/persons/{pseudonym}/timeline",
    summary="One person's course of care across every message type (logged)",
)
async def timeline(
    pseudonym: str,
    runtime: RuntimeDep,
    reader: StateReader,
    as_of: Annotated[date | None, Query(description="States on this date (valid time).")] = None,
    known_at: Annotated[
        datetime | None, Query(description="As the register knew it then (recorded time).")
    ] = None,
    purpose: Annotated[str | None, Query(max_length=500)] = None,
) -> OrjsonResponse:
    _checked(pseudonym)
    check_day(as_of, "as_of")
    if known_at is not None and known_at.tzinfo is None:
        raise Problem(422, "invalid_request", "known_at needs a time zone offset")
    entries: list[dict[str, Any]] = []
    for reg in await runtime.persons.registrations(pseudonym):
        models = [m for m in runtime.catalogue if m.message_type == reg.message_type]
        if not models:
            continue
        model = max(models, key=lambda m: m.version)
        view = await runtime.state.state_at(
            reg.unit,
            reg.message_type,
            reg.object_id,
            FOLDS[model.fold],
            valid_before=end_of_day(as_of) if as_of else None,
            known_at=known_at,
        )
        if view is None:
            continue
        entries.append(
            {
                "register": _register(reg.message_type),
                "message_type": reg.message_type,
                "unit": reg.unit,
                "object_id": reg.object_id,
                "clinical_time": view.clinical_time,
                "valid_time": view.valid_time.isoformat(),
                "deleted": view.deleted,
                "state": view.state,
            }
        )
    entries.sort(key=lambda e: (e["clinical_time"] or "", e["message_type"], e["object_id"]))
    await log_person_reads(
        runtime, reader, "intake:state", "timeline", None, None, pseudonym, purpose
    )
    return OrjsonResponse(
        {
            "pseudonym": pseudonym,
            "as_of": as_of.isoformat() if as_of else None,
            "known_at": known_at.isoformat() if known_at else None,
            "entries": entries,
        }
    )


@router.get(
    "/persons/{pseudonym}/reads",
    summary="Who read one person's data: the access log, for the register's audit (intake:admin)",
)
async def reads(
    pseudonym: str,
    runtime: RuntimeDep,
    admin: Admin,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> OrjsonResponse:
    _checked(pseudonym)
    # One more than asked: the answer says whether older reads were left out.
    entries = await runtime.persons.reads_of(pseudonym, limit=limit + 1)
    more, entries = len(entries) > limit, entries[:limit]
    await log_person_reads(
        runtime, admin, "intake:admin", "access_log", None, None, pseudonym, None
    )
    return OrjsonResponse(
        {
            "pseudonym": pseudonym,
            "entries": [
                {
                    "at": r.at.isoformat() if r.at else None,
                    "actor": r.actor,
                    "organisation": r.organisation or None,
                    "scope": r.scope,
                    "action": r.action,
                    "message_type": r.message_type,
                    "object_id": r.object_id,
                    "purpose": r.purpose,
                }
                for r in entries
            ],
            "more": more,  # older reads exist than those listed: ask with a larger limit
        }
    )


class ReidentifyIn(BaseModel):
    pseudonym: str = Field(max_length=64)
    purpose: str = Field(min_length=10, max_length=500, description="Why, for the access log.")


@router.post(
    "/identities/reidentify",
    summary="The person number behind one pseudonym (scope intake:identity; logged)",
)
async def reidentify(
    body: ReidentifyIn, runtime: RuntimeDep, reader: IdentityReader
) -> OrjsonResponse:
    pseudonym = _checked(body.pseudonym)
    row = await runtime.vault.get(pseudonym)
    if row is None:
        raise Problem(404, "not_found", "Unknown pseudonym", "The vault holds no such person.")
    await log_person_reads(
        runtime, reader, "intake:identity", "reidentify", None, None, pseudonym, body.purpose
    )
    try:
        identifier = runtime.identities.reveal(row.sealed, pseudonym)
    except SealedValueError as exc:
        raise Problem(
            503,
            "key_unavailable",
            "The key that sealed it is not in the keyset",
            f"Sealed under key {row.key_id}; restore it to the keyset (intake keys status).",
        ) from exc
    return OrjsonResponse({"pseudonym": pseudonym, "kind": row.kind, "identifier": identifier})


@router.get(
    "/insight",
    summary="A citizen's own insight: where their data is registered and who has read it",
)
async def insight(runtime: RuntimeDep, citizen: Citizen) -> OrjsonResponse:
    assert citizen.pid is not None  # the Citizen dependency makes sure
    pseudonym = pseudonym_of(runtime.identities.keyset(), citizen.pid)
    registrations = await runtime.persons.registrations(pseudonym)
    reads = await runtime.persons.reads_of(pseudonym, limit=INSIGHT_READS + 1)
    more_reads, reads = len(reads) > INSIGHT_READS, reads[:INSIGHT_READS]
    with store_failures_as_problems(runtime.metrics.store_errors.labels("gateway").inc):
        # Who the citizen is stays out of the log: only that their insight was read.
        await runtime.persons.log_reads(
            [PersonRead(None, "", "intake:insight", "insight", pseudonym=pseudonym)]
        )
    return OrjsonResponse(
        {
            "registered": [
                {
                    "register": _register(r.message_type),
                    "message_type": r.message_type,
                    "unit": r.unit,
                    "from": r.clinical_from,
                    "to": r.clinical_to,
                    "first_reported": r.first_recorded.isoformat(),
                    "last_reported": r.last_recorded.isoformat(),
                }
                for r in registrations
            ],
            # Organisation and role, when and why: never the name of a member of staff.
            "read_by": [
                {
                    "organisation": r.organisation or None,
                    "role": r.scope,
                    "action": r.action,
                    "at": r.at.isoformat() if r.at else None,
                    "purpose": r.purpose,
                }
                for r in reads
                if r.action != "insight"
            ],
            # The newest INSIGHT_READS reads are listed; true when older ones exist.
            "more_reads": more_reads,
        }
    )
