"""Logging every read of person-level data (docs/privacy.md): the routes call this before they
answer, so a read that cannot be logged is not answered (503 store_unavailable)."""

from __future__ import annotations

from typing import Any

import orjson

from identity.masking import PERSON_NUMBER
from identity.pseudonyms import pseudonym_of
from receiver.auth import Principal
from receiver.problems import store_failures_as_problems
from statestore.persons import PersonRead, pseudonyms_in
from statestore.review import ReviewRow
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
    await _log(
        runtime, principal, scope, action, message_type, object_id, pseudonyms_in(shown), purpose
    )


async def log_review_read(
    runtime: Runtime,
    principal: Principal,
    action: str,
    row: ReviewRow,
    shown: Any,
    purpose: str | None,
) -> None:
    """A reviewer's view or reveal of a rejected item, in the person access log under the
    pseudonym of every person number ``shown`` (the item as sent, or the value revealed) holds,
    so that the person's insight lists it; one row without a pseudonym when it holds none."""
    keyset = runtime.identities.keyset()
    pseudonyms = {pseudonym_of(keyset, n) for n in _person_numbers(shown)}
    await _log(
        runtime,
        principal,
        "intake:review",
        action,
        row.message_type,
        row.object_id,
        pseudonyms,
        purpose,
    )


async def _log(
    runtime: Runtime,
    principal: Principal,
    scope: str,
    action: str,
    message_type: str | None,
    object_id: str | None,
    pseudonyms: set[str],
    purpose: str | None,
) -> None:
    rows: list[str | None] = [*sorted(pseudonyms)] or [None]
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
            for pseudonym in rows
        )


def _person_numbers(value: Any) -> set[str]:
    """Every value or run of digits that looks like a person number (identity.masking's rule)."""
    return set(PERSON_NUMBER.findall(orjson.dumps(value).decode())) if value is not None else set()
