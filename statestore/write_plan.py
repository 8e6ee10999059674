"""The projector's write plan: what a batch changes besides its events, worked out from each
touched object's stored history and new events by folding them (see :mod:`statestore.projection`
for the steps). Pure: the statements that carry it out are in :mod:`statestore.projection_sql`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from statestore.history import Fold, FoldResult, FoldStep, HistoryEntry, ObjectKey, fold_order


def versions_of(
    key: ObjectKey, result: FoldResult, since: datetime | None
) -> list[tuple[Any, ...]]:
    """Intervals of valid time, as ``object_versions`` rows: each version lasts until the next
    one with a later valid time (events with the same valid time collapse into the last of
    them). Only the versions from ``since`` on, when given."""
    by_start: dict[datetime, FoldStep] = {}
    for step in result.steps:
        by_start[step.entry.valid_time] = step
    starts = sorted(by_start)
    rows = []
    for i, start in enumerate(starts):
        if since is not None and start < since:
            continue
        step = by_start[start]
        rows.append(
            (
                *key,
                start,
                starts[i + 1] if i + 1 < len(starts) else None,
                step.state,
                step.deleted,
                step.entry.context,
                step.entry.clinical_time,
                step.entry.event_id,
            )
        )
    return rows


@dataclass(slots=True)
class WritePlan:
    """What a batch writes besides its events, as rows in the column orders of
    :mod:`statestore.projection_sql`."""

    # Objects a late event re-folds: their stored versions and findings are removed first.
    rewritten: list[ObjectKey] = field(default_factory=list)
    objects: list[tuple[Any, ...]] = field(default_factory=list)
    # Upserted by (object, valid_from): a version that is stored already is overwritten.
    versions: list[tuple[Any, ...]] = field(default_factory=list)
    findings: list[tuple[Any, ...]] = field(default_factory=list)
    # Integrity findings on the batch's new events, as (event id, message type, rule id).
    new_findings: list[tuple[str, str, str]] = field(default_factory=list)

    def add(
        self,
        key: ObjectKey,
        stored: Sequence[HistoryEntry],
        new: Sequence[HistoryEntry],
        fold: Fold,
        now: datetime,
    ) -> None:
        """Re-fold one object from its stored history and its new events."""
        stored = sorted(stored, key=fold_order)
        new = sorted(new, key=fold_order)
        appended = not stored or fold_order(new[0]) > fold_order(stored[-1])
        history = [*stored, *new] if appended else sorted([*stored, *new], key=fold_order)
        result = fold(history)
        last = result.last
        self.objects.append(
            (
                *key,
                last.entry.version,
                last.state,
                last.deleted,
                len(history),
                last.entry.event_id,
                last.entry.valid_time,
                now,
                last.entry.context,
                last.entry.clinical_time,
            )
        )
        # Appended after stored events, only the versions from the last stored valid time on
        # change: that version's end, or its state when a new event shares its valid time.
        since = stored[-1].valid_time if stored and appended else None
        if stored and not appended:
            self.rewritten.append(key)
        self.versions += versions_of(key, result, since)
        new_ids = {e.event_id for e in new}
        for v in result.violations:
            if since is None or v.event_id in new_ids:
                self.findings.append((v.event_id, v.rule_id, *key, v.params))
            if v.event_id in new_ids:
                self.new_findings.append((v.event_id, key[1], v.rule_id))
