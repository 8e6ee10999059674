"""The folds are pure functions of an object's ordered history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.fold import UnknownActionError, fold_iplos_service, fold_replace
from statestore.projection import HistoryEntry

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _history(*steps: tuple[str, dict[str, Any]]) -> list[HistoryEntry]:
    return [
        HistoryEntry(f"e{i}", 1, action, T0 + timedelta(days=i), T0, payload)
        for i, (action, payload) in enumerate(steps)
    ]


def test_replace_upserts_supplements_and_annuls() -> None:
    history = _history(
        ("upsert", {"a": 1, "diagnoser": ["J45"], "b": None}),
        ("supplement", {"b": 2, "diagnoser": ["J45", "E11"], "a": None}),
    )
    folded = fold_replace(history)
    assert folded.state == {"a": 1, "b": 2, "diagnoser": ["J45", "E11"]}
    assert (folded.deleted, folded.event_count, folded.last_event_id) == (False, 2, "e1")
    annulled = fold_replace([*history, *_history(("annul", {}))[0:1]])
    assert annulled.deleted is True
    assert annulled.state == folded.state  # the last content is kept for the record


def test_replace_delete_and_restore() -> None:
    steps = _history(("upsert", {"a": 1}), ("delete", {}), ("restore", {}))
    assert fold_replace(steps[:2]).deleted is True
    assert fold_replace(steps).deleted is False
    assert fold_replace(steps).state == {"a": 1}


def test_iplos_service_state_machine() -> None:
    history = _history(
        ("service_started", {"tjenesteType": "A1", "tjenesteutforer": "X"}),
        ("stop_from", {"stoppId": "S1"}),
        ("stop_to", {"stoppId": "S1"}),
        ("provider_changed", {"tjenesteutforer": "Y"}),
    )
    states = [fold_iplos_service(history[: n + 1]).state for n in range(len(history))]
    assert [s["tjenesteStatus"] for s in states if s] == ["active", "paused", "active", "active"]
    assert states[1] is not None
    assert states[1]["aapentStoppId"] == "S1"
    final = states[-1]
    assert final is not None
    assert (final["tjenesteutforer"], final["tjenesteType"], final["aapentStoppId"]) == (
        "Y",
        "A1",
        None,
    )
    ended = fold_iplos_service([*history, *_history(("service_ended", {}))[:1]])
    assert ended.state is not None
    assert ended.state["tjenesteStatus"] == "ended"


@pytest.mark.parametrize("fold", [fold_replace, fold_iplos_service])
def test_unknown_actions_and_empty_histories_are_refused(fold: Any) -> None:
    with pytest.raises(UnknownActionError):
        fold(_history(("teleport", {})))
    with pytest.raises(ValueError, match="at least one event"):
        fold([])
