"""The folds are pure functions of an object's ordered history."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.fold import UnknownActionError, fold_iplos_service, fold_replace
from statestore.history import FoldResult, HistoryEntry, fold_order

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _history(*steps: tuple[str, dict[str, Any]]) -> list[HistoryEntry]:
    return [
        HistoryEntry(f"e{i}", 1, action, T0 + timedelta(days=i), T0, payload)
        for i, (action, payload) in enumerate(steps)
    ]


def _rules(result: FoldResult) -> list[tuple[str, str]]:
    return [(v.event_id, v.rule_id) for v in result.violations]


def test_replace_upserts_supplements_and_annuls() -> None:
    history = _history(
        ("upsert", {"a": 1, "diagnoser": ["J45"], "b": None}),
        ("supplement", {"b": 2, "diagnoser": ["J45", "E11"], "a": None}),
    )
    folded = fold_replace(history)
    assert folded.last.state == {"a": 1, "b": 2, "diagnoser": ["J45", "E11"]}
    assert (folded.last.deleted, len(folded.steps), folded.last.entry.event_id) == (False, 2, "e1")
    annulled = fold_replace([*history, *_history(("annul", {}))[:1]])
    assert annulled.last.deleted is True
    assert annulled.last.state == folded.last.state  # the last content is kept for the record
    assert annulled.violations == ()


def test_replace_delete_and_restore() -> None:
    steps = _history(("upsert", {"a": 1}), ("delete", {}), ("restore", {}))
    assert fold_replace(steps[:2]).last.deleted is True
    assert fold_replace(steps).last.deleted is False
    assert fold_replace(steps).last.state == {"a": 1}


def test_annulling_an_unknown_object_is_an_integrity_finding() -> None:
    result = fold_replace(_history(("annul", {})))
    assert _rules(result) == [("e0", "INT-003")]


def test_iplos_service_state_machine() -> None:
    history = _history(
        ("service_started", {"tjenesteType": "A1", "tjenesteutforer": "X"}),
        ("stop_from", {"stoppId": "S1"}),
        ("stop_to", {"stoppId": "S1"}),
        ("provider_changed", {"tjenesteutforer": "Y"}),
    )
    result = fold_iplos_service(history)
    states = [step.state or {} for step in result.steps]
    assert [s["tjenesteStatus"] for s in states] == ["active", "paused", "active", "active"]
    assert states[1]["aapentStoppId"] == "S1"
    final = states[-1]
    assert (final["tjenesteutforer"], final["tjenesteType"], final["aapentStoppId"]) == (
        "Y",
        "A1",
        None,
    )
    assert final["startDato"] == "2024-03-01"
    assert result.violations == ()
    ended = fold_iplos_service([*history, *_history(("service_ended", {}))[:1]])
    assert (ended.last.state or {})["tjenesteStatus"] == "ended"


def test_iplos_integrity_findings() -> None:
    never_started = fold_iplos_service(_history(("service_ended", {})))
    assert _rules(never_started) == [("e0", "INT-001")]
    no_open_stop = fold_iplos_service(_history(("service_started", {}), ("stop_to", {})))
    assert _rules(no_open_stop) == [("e1", "INT-002")]
    after_end = fold_iplos_service(
        _history(("service_started", {}), ("service_ended", {}), ("provider_changed", {}))
    )
    assert _rules(after_end) == [("e2", "INT-004")]


@pytest.mark.parametrize("fold", [fold_replace, fold_iplos_service])
def test_unknown_actions_and_empty_histories_are_refused(fold: Any) -> None:
    with pytest.raises(UnknownActionError):
        fold(_history(("teleport", {})))
    with pytest.raises(ValueError, match="at least one event"):
        fold([])


# --- arrival order never changes the result --------------------------------------------------

ACTIONS = ["service_started", "stop_from", "stop_to", "provider_changed", "service_ended"]


@st.composite
def service_histories(draw: st.DrawFn) -> list[HistoryEntry]:
    count = draw(st.integers(min_value=1, max_value=8))
    entries = []
    for i in range(count):
        day = draw(st.integers(min_value=0, max_value=5))  # same-day events are common
        entries.append(
            HistoryEntry(
                event_id=f"ev-{i}",
                version=1,
                action=draw(st.sampled_from(ACTIONS)),
                valid_time=T0 + timedelta(days=day),
                recorded_time=T0 + timedelta(days=10, seconds=draw(st.integers(0, 3))),
                payload={
                    "tjenesteutforer": draw(st.sampled_from(["A", "B", None])),
                    "stoppId": draw(st.sampled_from(["S1", None])),
                },
                item_index=i,
            )
        )
    return entries


@settings(max_examples=200, deadline=None)
@given(history=service_histories(), seed=st.integers(0, 2**32))
def test_any_arrival_order_with_duplicates_folds_the_same(
    history: list[HistoryEntry], seed: int
) -> None:
    rng = random.Random(seed)
    arrived = history + rng.sample(history, k=rng.randint(0, len(history)))  # duplicates
    rng.shuffle(arrived)
    # What the store does: drop duplicate event ids, then fold in fold order.
    unique = {e.event_id: e for e in arrived}.values()
    expected = fold_iplos_service(sorted(history, key=fold_order))
    got = fold_iplos_service(sorted(unique, key=fold_order))
    assert got == expected
    # ... and "as of" any day is the fold of the events valid by then, whatever the order.
    for day in range(6):
        cutoff = T0 + timedelta(days=day + 1)
        before = [e for e in sorted(unique, key=fold_order) if e.valid_time < cutoff]
        reference = [e for e in sorted(history, key=fold_order) if e.valid_time < cutoff]
        if reference:
            assert fold_iplos_service(before) == fold_iplos_service(reference)


def test_fold_order_is_total() -> None:
    entries = _history(("upsert", {}), ("upsert", {}))
    same_time = [HistoryEntry(f"x{i}", 1, "upsert", T0, T0, {}, item_index=i) for i in range(3)]
    for perm in itertools.permutations(entries + same_time):
        assert sorted(perm, key=fold_order) == sorted(entries + same_time, key=fold_order)


def test_every_integrity_rule_is_produced_by_a_fold_here() -> None:
    from validators.rules import load_catalogue

    produced = set()
    for history, fold in [
        (_history(("annul", {})), fold_replace),
        (_history(("service_ended", {})), fold_iplos_service),
        (_history(("service_started", {}), ("stop_to", {})), fold_iplos_service),
        (_history(("provider_changed", {})), fold_iplos_service),
    ]:
        produced |= {v.rule_id for v in fold(history).violations}
    integrity = {rid for rid, r in load_catalogue().items() if r.level == "integrity"}
    assert produced == integrity


def test_deleting_an_unreported_appointment_is_not_a_finding() -> None:
    # Booked and cancelled between two deliveries: only the deletion arrives.
    result = fold_replace(_history(("delete", {})))
    assert result.violations == ()
    assert result.last.deleted is True
