"""Review sign-in state: OpenID Connect sign-ins under way and the sessions they open.

A sign-in is kept from the redirect to the provider until its callback (ten minutes at most) and
taken once, so a callback cannot be replayed. A session is found by the hash of the id its
browser holds, so a copy of the store opens no session; it ends at ``expires_at`` or at
sign-out, whichever comes first. Nothing personal is kept: the name the review shows and a hash
of the provider's subject.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from statestore.engine import StoreEngines
from statestore.tables import review_sessions, review_sign_ins

SIGN_IN_MINUTES = 10


@dataclass(frozen=True, slots=True)
class SignIn:
    state: str
    nonce: str
    code_verifier: str
    next_path: str


@dataclass(frozen=True, slots=True)
class Session:
    actor: str
    created_at: datetime
    expires_at: datetime


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ReviewSessions:
    def __init__(self, engines: StoreEngines) -> None:
        self._engines = engines

    async def begin_sign_in(self, next_path: str) -> SignIn:
        """A new sign-in: its state, nonce and PKCE code verifier (RFC 7636: 43–128 chars)."""
        sign_in = SignIn(
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(64),
            next_path,
        )
        now = datetime.now(UTC)
        async with self._engines.writer.begin() as conn:
            await conn.execute(delete(review_sign_ins).where(review_sign_ins.c.expires_at < now))
            await conn.execute(
                review_sign_ins.insert().values(
                    state_sha256=_sha256(sign_in.state),
                    nonce=sign_in.nonce,
                    code_verifier=sign_in.code_verifier,
                    next_path=next_path[:500],
                    expires_at=now + timedelta(minutes=SIGN_IN_MINUTES),
                )
            )
        return sign_in

    async def take_sign_in(self, state: str) -> SignIn | None:
        """The sign-in a callback's state names, removed; None if unknown, used or expired."""
        t = review_sign_ins
        async with self._engines.writer.begin() as conn:
            row = (
                await conn.execute(select(t).where(t.c.state_sha256 == _sha256(state)))
            ).one_or_none()
            if row is None:
                return None
            await conn.execute(delete(t).where(t.c.state_sha256 == row.state_sha256))
        if row.expires_at < datetime.now(UTC):
            return None
        return SignIn(state, row.nonce, row.code_verifier, row.next_path)

    async def open(self, actor: str, subject: str, minutes: int) -> tuple[str, Session]:
        """A new session: the id for the browser's cookie, and the session."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        session = Session(actor[:200], now, now + timedelta(minutes=minutes))
        async with self._engines.writer.begin() as conn:
            await conn.execute(
                delete(review_sessions).where(
                    review_sessions.c.expires_at < now - timedelta(days=1)
                )
            )
            await conn.execute(
                review_sessions.insert().values(
                    session_sha256=_sha256(session_id),
                    actor=session.actor,
                    subject_sha256=_sha256(subject),
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return session_id, session

    async def find(self, session_id: str) -> Session | None:
        """The open session with this id, or None (unknown, expired or signed out)."""
        t = review_sessions
        async with self._engines.reader.connect() as conn:
            row = (
                await conn.execute(
                    select(t.c.actor, t.c.created_at, t.c.expires_at).where(
                        t.c.session_sha256 == _sha256(session_id), t.c.ended_at.is_(None)
                    )
                )
            ).one_or_none()
        if row is None or row.expires_at <= datetime.now(UTC):
            return None
        return Session(row.actor, row.created_at, row.expires_at)

    async def end(self, session_id: str) -> None:
        t = review_sessions
        async with self._engines.writer.begin() as conn:
            await conn.execute(
                update(t)
                .where(t.c.session_sha256 == _sha256(session_id), t.c.ended_at.is_(None))
                .values(ended_at=datetime.now(UTC))
            )
