"""Who is reviewing: the reviewer's access token, from the Authorization header (API clients, or
an SSO proxy in front of the UI), or the review session cookie a browser got at sign-in
(:mod:`receiver.routes.review_signin`).

The cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) holds either a session id
(``s1.<id>``: a sign-in with OpenID Connect, looked up in :mod:`statestore.review.sessions`, so
it ends at its expiry or at sign-out) or, in development, a pasted access token itself (the
session then ends when the token expires). A request authenticated by
the cookie that changes something must also carry the session's CSRF token (form field
``csrf`` or header ``X-CSRF-Token``): a value derived from the token that another site cannot
read, on top of SameSite=Strict.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security

from receiver.auth import AuthError, Principal, TokenVerifier
from receiver.deps import get_principal, rate_limit
from receiver.openapi import BEARER, DPOP
from receiver.problems import Problem
from statestore.review.sessions import ReviewSessions

COOKIE = "intake_review"
SESSION_PREFIX = "s1."  # a cookie naming a server-side session, not holding a token
SCOPE = "intake:review"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Reviewer:
    principal: Principal
    name: str
    csrf: str  # empty when authenticated by header (no cookie, nothing to forge)
    by_cookie: bool


def csrf_for(token: str) -> str:
    return hmac.new(b"intake-review-csrf", token.encode(), hashlib.sha256).hexdigest()[:32]


async def principal_from_cookie(request: Request, cookie: str) -> Principal:
    """The reviewer a session cookie names: an open session, or a valid access token."""
    if cookie.startswith(SESSION_PREFIX):
        runtime = request.app.state.runtime
        session = await ReviewSessions(runtime.engines).find(cookie.removeprefix(SESSION_PREFIX))
        if session is None:
            raise NotSignedIn()
        # The provider vouched for the person and their reviewer role; they review, nothing else.
        return Principal(
            unit="",
            supplier=None,
            client_id=f"review:{session.actor}",  # each person their own rate limit
            scopes=frozenset({SCOPE}),
            actor=session.actor,
        )
    return await principal_from_token(request, cookie)


async def principal_from_token(request: Request, token: str) -> Principal:
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return await verifier.verify_async(token)
    except AuthError as exc:
        raise NotSignedIn() from exc


class NotSignedIn(Problem):
    """No usable review session: pages answer with the sign-in page, the API with 401."""

    def __init__(self) -> None:
        super().__init__(
            401,
            "unauthorized",
            "Sign in to review",
            "Send 'Authorization: Bearer <token>' with the intake:review scope, or sign in at "
            "/review/login.",
            headers={"WWW-Authenticate": 'Bearer realm="register-intake"'},
        )


async def get_reviewer(
    request: Request,
    _bearer: Annotated[None, Security(BEARER, scopes=[SCOPE])],
    _dpop: Annotated[None, Security(DPOP, scopes=[SCOPE])],
) -> Reviewer:
    if request.headers.get("authorization"):
        principal = await get_principal(request)
        by_cookie, csrf = False, ""
    else:
        token = request.cookies.get(COOKIE)
        if not token:
            raise NotSignedIn()
        principal = await principal_from_cookie(request, token)
        rate_limit(request, principal)
        by_cookie, csrf = True, csrf_for(token)
        if request.method not in SAFE_METHODS:
            await _check_csrf(request, csrf)
    if SCOPE not in principal.scopes:
        raise Problem(
            403,
            "insufficient_scope",
            "The token lacks a scope",
            f"Reviewing rejected items needs the scope {SCOPE}.",
        )
    name = principal.actor or principal.client_id or f"unit {principal.unit}"
    return Reviewer(principal, name, csrf, by_cookie)


async def signed_in(request: Request) -> Reviewer | None:
    """The reviewer a browser's session cookie names, or None (for pages that show the menu
    whatever happened, such as an error page): no CSRF check, nothing is changed."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        principal = await principal_from_cookie(request, token)
    except NotSignedIn:
        return None
    if SCOPE not in principal.scopes:
        return None
    name = principal.actor or principal.client_id or f"unit {principal.unit}"
    return Reviewer(principal, name, csrf_for(token), True)


async def _check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        sent = str((await request.form()).get("csrf", ""))
    if not sent or not hmac.compare_digest(sent, expected):
        raise Problem(
            403,
            "csrf_failed",
            "The form is stale or came from elsewhere",
            "Reload the page and try again.",
        )


ReviewerDep = Annotated[Reviewer, Depends(get_reviewer)]
