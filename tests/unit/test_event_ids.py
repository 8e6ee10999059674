"""Event ids are derived once and for all: the fast derivation must give exactly the uuid5 ids
that events, receipts and the projector's idempotency have always used."""

from __future__ import annotations

import uuid

import pytest

from schemas.events import event_id_for

NAMESPACE = uuid.UUID("6f1f5c2e-3a7d-5b8e-9c41-2d0a7e8b4f10")


def _as_defined(unit: str, model_key: str, body_sha256: str, item_index: int) -> str:
    name = f"event\x1f{unit}\x1f{model_key}\x1f{body_sha256}\x1f{item_index}"
    return str(uuid.uuid5(NAMESPACE, name))


@pytest.mark.parametrize("unit", ["974152533", "99999999ø"])
@pytest.mark.parametrize("body_sha256", ["0" * 64, "9f86d081884c7d659a2feaa0c55ad015" * 2])
def test_event_ids_are_the_uuid5_of_their_name(unit: str, body_sha256: str) -> None:
    for index in [*range(1200), 10**9, 2**63]:
        expected = _as_defined(unit, "NPR_Kontakt/1", body_sha256, index)
        assert event_id_for(unit, "NPR_Kontakt/1", body_sha256, index) == expected


def test_messages_interleaved_keep_their_own_ids() -> None:
    # The shared prefix is kept per message; ids of messages derived in turn must not mix.
    for index in range(50):
        for body in ("a" * 64, "b" * 64, "c" * 64):
            expected = _as_defined("974152533", "HST_Avtale/1", body, index)
            assert event_id_for("974152533", "HST_Avtale/1", body, index) == expected
