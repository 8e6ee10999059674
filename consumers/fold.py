"""Last-known state as a pure fold over an object's history, one fold per kind of model.

The history arrives in fold order (:func:`statestore.history.fold_order`). A model names its
fold with the ``x-fold`` annotation on its schema; :data:`FOLDS` maps the names to functions.
Each fold returns the state after every event (the versions that point-in-time questions are
answered from) and the integrity findings it made.

``replace`` (appointments, consultations, dental treatments, NPR contacts):
    ``upsert`` replaces the state; ``supplement`` adds to it (fields it sets win, lists grow);
    ``delete`` and ``annul`` mark the object gone, keeping its last content; ``restore`` undoes
    a deletion. Annulling an object that was never reported is INT-003 (deleting one is not:
    an appointment booked and cancelled between deliveries arrives as a deletion alone).

``iplos_service`` (municipal service allocations) is a state machine kept in ``tjenesteStatus``:
    ``service_started`` → active; ``stop_from`` → paused (remembering ``stoppId``);
    ``stop_to`` → active; ``service_ended`` → ended; ``provider_changed`` keeps the status.
    Every event's fields are merged into the state, so the latest provider and service type are
    there; the dates of start and end are kept as ``startDato`` and ``sluttDato``.
    Findings: ending a service never started (INT-001), a stop-to with no open stop (INT-002),
    any other event on a service that is not active or paused (INT-004).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas.events import CARE_TIMEZONE
from statestore.history import Fold, FoldResult, FoldStep, HistoryEntry, Violation


class UnknownActionError(ValueError):
    """An event carries an action its model's fold does not know: a programming error."""


def _merge(state: dict[str, Any] | None, addition: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(state or {})
    for key, value in addition.items():
        if value is None:
            continue
        current = merged.get(key)
        if isinstance(current, list) and isinstance(value, list):
            merged[key] = current + [v for v in value if v not in current]
        else:
            merged[key] = value
    return merged


def fold_replace(history: Sequence[HistoryEntry]) -> FoldResult:
    if not history:
        raise ValueError("an object has at least one event")
    state: dict[str, Any] | None = None
    deleted = False
    steps: list[FoldStep] = []
    violations: list[Violation] = []
    for entry in history:
        if entry.action == "upsert":
            state, deleted = entry.payload, False
        elif entry.action == "supplement":
            state = _merge(state, entry.payload)
        elif entry.action in ("delete", "annul"):
            # An appointment booked and cancelled between two deliveries arrives as a deletion
            # alone; an annulment (C) of a report the register never had is a real mismatch.
            if state is None and entry.action == "annul":
                violations.append(Violation(entry.event_id, "INT-003"))
            deleted = True
        elif entry.action == "restore":
            deleted = False
        else:
            raise UnknownActionError(entry.action)
        steps.append(FoldStep(entry, state, deleted))
    return FoldResult(tuple(steps), tuple(violations))


_SERVICE_STATUS = {
    "service_started": "active",
    "stop_from": "paused",
    "stop_to": "active",
    "service_ended": "ended",
}


def fold_iplos_service(history: Sequence[HistoryEntry]) -> FoldResult:
    if not history:
        raise ValueError("an object has at least one event")
    state: dict[str, Any] = {"tjenesteStatus": None, "aapentStoppId": None}
    steps: list[FoldStep] = []
    violations: list[Violation] = []
    for entry in history:
        action = entry.action
        if action not in _SERVICE_STATUS and action != "provider_changed":
            raise UnknownActionError(action)
        status = state["tjenesteStatus"]
        if action == "service_ended" and status is None:
            violations.append(Violation(entry.event_id, "INT-001"))
        elif action == "stop_to" and state["aapentStoppId"] is None:
            violations.append(Violation(entry.event_id, "INT-002"))
        elif action != "service_started" and status not in ("active", "paused"):
            violations.append(
                Violation(
                    entry.event_id, "INT-004", {"status": status or "ikke startet / not started"}
                )
            )
        state = _merge(state, entry.payload)
        if action in _SERVICE_STATUS:
            state["tjenesteStatus"] = _SERVICE_STATUS[action]
        day = entry.valid_time.astimezone(CARE_TIMEZONE).date().isoformat()
        if action == "service_started":
            state["startDato"] = day
        elif action == "service_ended":
            state["sluttDato"] = day
        if action == "stop_from":
            state["aapentStoppId"] = entry.payload.get("stoppId")
        elif action in ("stop_to", "service_ended"):
            state["aapentStoppId"] = None
        steps.append(FoldStep(entry, dict(state), deleted=False))
    return FoldResult(tuple(steps), tuple(violations))


FOLDS: dict[str, Fold] = {"replace": fold_replace, "iplos_service": fold_iplos_service}
