"""Review sign-in state on SQLite and PostgreSQL: a sign-in is taken once and expires, a session
is found by its id only, ends at its expiry and at sign-out, and keeps nothing the browser holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from statestore.engine import StoreEngines
from statestore.review.sessions import ReviewSessions
from statestore.tables import review_sessions, review_sign_ins
from tests.contract.test_statestore_contract import engines

__all__ = ["engines"]


async def test_a_sign_in_is_taken_once_and_expires(engines: StoreEngines) -> None:
    sessions = ReviewSessions(engines)
    started = await sessions.begin_sign_in("/review/items")
    assert 43 <= len(started.code_verifier) <= 128  # RFC 7636
    taken = await sessions.take_sign_in(started.state)
    assert taken == started
    assert await sessions.take_sign_in(started.state) is None  # a callback cannot be replayed
    late = await sessions.begin_sign_in("/review/problems")
    async with engines.writer.begin() as conn:
        await conn.execute(
            update(review_sign_ins).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert await sessions.take_sign_in(late.state) is None


async def test_a_session_ends_at_its_expiry_and_at_sign_out(engines: StoreEngines) -> None:
    sessions = ReviewSessions(engines)
    session_id, _ = await sessions.open("Kari Kvalitet", "provider-subject-1", minutes=30)
    found = await sessions.find(session_id)
    assert found is not None
    assert found.actor == "Kari Kvalitet"
    assert found.expires_at - found.created_at == timedelta(minutes=30)
    assert await sessions.find(session_id + "x") is None
    async with engines.reader.connect() as conn:
        stored = (await conn.execute(select(review_sessions))).one()
    assert session_id not in str(tuple(stored))  # only its hash is kept
    assert "provider-subject-1" not in str(tuple(stored))

    await sessions.end(session_id)
    assert await sessions.find(session_id) is None

    other, _ = await sessions.open("Ola", "provider-subject-2", minutes=30)
    async with engines.writer.begin() as conn:
        await conn.execute(
            update(review_sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert await sessions.find(other) is None
