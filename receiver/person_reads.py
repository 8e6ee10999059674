"""Logging every read of person-level data (docs/privacy.md): the routes call this before they
answer, so a read that cannot be logged is not answered (503 store_unavailable)."""

from __future__ import annotations

from typing import Any

from receiver.auth import Principal
from receiver.problems import store_failures_as_problems
from statestore.persons import PersonRead, pseudonyms_in
from wiring.runtime import Runtime


async def log_person_reads(
    runtime: Runtime,
    principal: Principal,
    scope: str,
    action: str,
    message_type: str | None,
    object_id: str | None,
    shown: Any,
    purpose: str | None,
) -> None:
    """One access-log row per person whose pseudonym ``shown`` (what the answer holds) names;
    one without a pseudonym when it names none, so the read is on record all the same."""
    pseudonyms: list[str | None] = [*sorted(pseudonyms_in(shown))] or [None]
    with store_failures_as_problems(runtime.metrics.store_errors.labels("gateway").inc):
        await runtime.persons.log_reads(
            PersonRead(
                actor=principal.actor,
                organisation=principal.unit,
                scope=scope,
                action=action,
                message_type=message_type,
                object_id=object_id,
                pseudonym=pseudonym,
                purpose=purpose,
            )
            for pseudonym in pseudonyms
        )
