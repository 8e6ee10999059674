"""Last-known state as a pure fold over an object's history (already in fold order:
valid time, then recorded time, then arrival).

Actions: ``upsert`` replaces the state; ``delete`` marks the object deleted and keeps the last
state for the record; ``restore`` undoes a deletion.
"""

from __future__ import annotations

from collections.abc import Sequence

from statestore.projection import FoldedState, HistoryEntry


class UnknownActionError(ValueError):
    """An event carries an action the fold does not know: a programming error, not bad input."""


def fold_upserts(history: Sequence[HistoryEntry]) -> FoldedState:
    if not history:
        raise ValueError("an object has at least one event")
    state = None
    deleted = False
    for entry in history:
        if entry.action == "upsert":
            state = entry.payload
            deleted = False
        elif entry.action == "delete":
            deleted = True
        elif entry.action == "restore":
            deleted = False
        else:
            raise UnknownActionError(entry.action)
    last = history[-1]
    return FoldedState(
        state=state,
        deleted=deleted,
        version=last.version,
        last_event_id=last.event_id,
        valid_time=last.valid_time,
        event_count=len(history),
    )
