"""Last-known state as a pure fold over an object's history, one fold per kind of model.

The history arrives in fold order (valid time, then recorded time, then arrival). A model names
its fold with the ``x-fold`` annotation on its schema; :data:`FOLDS` maps the names to functions.

``replace`` (appointments, consultations, dental treatments, NPR contacts):
    ``upsert`` replaces the state; ``supplement`` adds to it (fields it sets win, lists grow);
    ``delete`` and ``annul`` mark the object gone, keeping its last content; ``restore`` undoes
    a deletion. Each report is the sender's whole current view of the object, so reports apply
    in the order they were *recorded*: a correction (M) that moves the contact's date earlier
    must still win over the original it corrects.

``iplos_service`` (municipal service allocations) is a state machine kept in ``tjenesteStatus``:
    ``service_started`` → active; ``stop_from`` → paused (remembering ``stoppId``);
    ``stop_to`` → active; ``service_ended`` → ended; ``provider_changed`` keeps the status.
    Every event's fields are merged into the state, so the latest provider, service type and
    dates are there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from statestore.projection import Fold, FoldedState, HistoryEntry


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


def _folded(
    history: Sequence[HistoryEntry], state: dict[str, Any] | None, deleted: bool
) -> FoldedState:
    last = history[-1]
    return FoldedState(
        state=state,
        deleted=deleted,
        version=last.version,
        last_event_id=last.event_id,
        valid_time=last.valid_time,
        event_count=len(history),
    )


def fold_replace(history: Sequence[HistoryEntry]) -> FoldedState:
    if not history:
        raise ValueError("an object has at least one event")
    state: dict[str, Any] | None = None
    deleted = False
    # sorted() is stable: reports recorded at the same instant keep their arrival order.
    for entry in sorted(history, key=lambda e: e.recorded_time):
        if entry.action == "upsert":
            state, deleted = entry.payload, False
        elif entry.action == "supplement":
            state = _merge(state, entry.payload)
        elif entry.action in ("delete", "annul"):
            deleted = True
        elif entry.action == "restore":
            deleted = False
        else:
            raise UnknownActionError(entry.action)
    return _folded(sorted(history, key=lambda e: e.recorded_time), state, deleted)


_SERVICE_STATUS = {
    "service_started": "active",
    "stop_from": "paused",
    "stop_to": "active",
    "service_ended": "ended",
}


def fold_iplos_service(history: Sequence[HistoryEntry]) -> FoldedState:
    if not history:
        raise ValueError("an object has at least one event")
    state: dict[str, Any] = {"tjenesteStatus": None, "aapentStoppId": None}
    for entry in history:
        if entry.action not in _SERVICE_STATUS and entry.action != "provider_changed":
            raise UnknownActionError(entry.action)
        state = _merge(state, entry.payload)
        if entry.action in _SERVICE_STATUS:
            state["tjenesteStatus"] = _SERVICE_STATUS[entry.action]
        if entry.action == "stop_from":
            state["aapentStoppId"] = entry.payload.get("stoppId")
        elif entry.action in ("stop_to", "service_ended"):
            state["aapentStoppId"] = None
    return _folded(history, state, deleted=False)


FOLDS: dict[str, Fold] = {"replace": fold_replace, "iplos_service": fold_iplos_service}
