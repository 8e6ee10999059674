"""An object's history as the fold sees it, and what the fold makes of it: the types the pure
fold (:mod:`consumers.fold`), the projector (:mod:`statestore.projection`) and the state queries
share, and the one order histories fold in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.events import Event

ObjectKey = tuple[str, str, str]  # unit, message type, object id


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event in an object's history, as the fold sees it."""

    event_id: str
    version: int
    action: str
    valid_time: datetime
    recorded_time: datetime
    payload: dict[str, Any]
    item_index: int = 0
    context: dict[str, Any] = field(default_factory=dict)
    clinical_time: str | None = None


def history_entry(event: Event) -> HistoryEntry:
    """How an event stands in its object's history."""
    return HistoryEntry(
        event.event_id,
        event.version,
        event.action,
        event.valid_time,
        event.recorded_time,
        event.payload,
        event.item_index,
        event.context,
        event.clinical_time,
    )


def fold_order(entry: HistoryEntry) -> tuple[datetime, datetime, int, str]:
    """The one order histories fold in: valid time, then recorded time, then position in the
    message, then event id, so that the order never depends on arrival."""
    return (entry.valid_time, entry.recorded_time, entry.item_index, entry.event_id)


@dataclass(frozen=True, slots=True)
class FoldStep:
    """The object's state right after one event."""

    entry: HistoryEntry
    state: dict[str, Any] | None
    deleted: bool


@dataclass(frozen=True, slots=True)
class Violation:
    """An integrity finding the fold made about one event (the rule catalogue gives its text)."""

    event_id: str
    rule_id: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FoldResult:
    steps: tuple[FoldStep, ...]
    violations: tuple[Violation, ...] = ()

    @property
    def last(self) -> FoldStep:
        return self.steps[-1]


# A pure left fold from an object's history, in fold order, to its states and findings: the
# step for an event depends only on the events before it.
Fold = Callable[[Sequence[HistoryEntry]], FoldResult]
