"""Signing in to the review pages and out again.

With a sign-in provider configured (``INTAKE_REVIEW_OIDC_*``, HelseID in production): the
OpenID Connect authorization code flow with PKCE (:mod:`receiver.review_oidc`). ``/review/login``
offers the provider; ``/review/login/oidc`` starts a sign-in (its state kept server-side, and in
a cookie binding it to this browser) and sends the browser to the provider; the provider sends
it back to ``/review/callback``, which opens a session (:mod:`statestore.review.sessions`) that
lasts ``INTAKE_REVIEW_SESSION_MINUTES``. ``/review/logout`` ends the session here and, when the
provider offers it, there too.

Outside production, ``/review/login`` also takes a pasted access token with the
``intake:review`` scope (the cookie then holds the token itself; :mod:`receiver.review_session`).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from receiver.deps import RuntimeDep
from receiver.review_oidc import OidcClient, SignInFailed
from receiver.review_session import (
    COOKIE,
    SCOPE,
    SESSION_PREFIX,
    NotSignedIn,
    ReviewerDep,
    principal_from_token,
)
from receiver.routes.review_pages import page
from statestore.review.sessions import SIGN_IN_MINUTES, ReviewSessions

router = APIRouter(prefix="/review", include_in_schema=False)

SIGN_IN_COOKIE = "intake_review_sign_in"
HOME = "/review/problems"


def _oidc(request: Request) -> OidcClient | None:
    client: OidcClient | None = getattr(request.app.state, "review_oidc", None)
    return client


def _local(target: str) -> str:
    """Only redirect within the review pages (no open redirect)."""
    return target if target.startswith("/review") and "//" not in target else HOME


def _login_page(
    request: Request, runtime: RuntimeDep, next_path: str, error: str | None, status: int = 200
) -> HTMLResponse:
    response = page(
        request,
        "login.html",
        None,
        {
            "next": next_path,
            "error": error,
            "oidc": _oidc(request) is not None,
            "token_form": runtime.settings.review_token_sign_in,
        },
    )
    response.status_code = status
    return response


@router.get("/login")
async def login_form(request: Request, runtime: RuntimeDep, next: str = HOME) -> HTMLResponse:
    return _login_page(request, runtime, _local(next), None)


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep) -> Response:
    """A pasted access token (development): the cookie holds the token."""
    form = await request.form()
    target = _local(str(form.get("next", HOME)))
    if not runtime.settings.review_token_sign_in:
        return _login_page(
            request, runtime, target, "Logg inn med innloggingstjenesten.", status=403
        )
    token = str(form.get("token", "")).strip()
    error = None
    try:
        principal = await principal_from_token(request, token) if token else None
    except NotSignedIn:
        principal = None
    if principal is None:
        error = "Tilgangsbeviset er ugyldig eller utløpt."
    elif SCOPE not in principal.scopes:
        error = "Tilgangsbeviset mangler tilgangen intake:review."
    if error:
        return _login_page(request, runtime, target, error, status=401)
    response = RedirectResponse(target, status_code=303)
    _set_session_cookie(request, response, token)
    return response


@router.get("/login/oidc")
async def begin_sign_in(request: Request, runtime: RuntimeDep, next: str = HOME) -> Response:
    oidc = _oidc(request)
    if oidc is None:
        return _login_page(request, runtime, _local(next), "Ingen innloggingstjeneste er satt opp.")
    sign_in = await ReviewSessions(runtime.engines).begin_sign_in(_local(next))
    try:
        target = await oidc.authorization_url(
            str(request.base_url),
            state=sign_in.state,
            nonce=sign_in.nonce,
            code_verifier=sign_in.code_verifier,
        )
    except SignInFailed as exc:
        return _login_page(request, runtime, _local(next), exc.reason, status=503)
    response = RedirectResponse(target, status_code=303)
    # Lax, not Strict: the provider's redirect back is a navigation from another site.
    response.set_cookie(
        SIGN_IN_COOKIE,
        sign_in.state,
        max_age=SIGN_IN_MINUTES * 60,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/review/callback",
    )
    return response


@router.get("/callback")
async def callback(request: Request, runtime: RuntimeDep) -> Response:
    oidc = _oidc(request)
    query = request.query_params
    state = query.get("state", "")
    bound = request.cookies.get(SIGN_IN_COOKIE, "")
    sessions = ReviewSessions(runtime.engines)
    if oidc is None or not state or not hmac.compare_digest(state, bound):
        return _login_page(
            request, runtime, HOME, "Innloggingen startet ikke her. Prøv igjen.", status=400
        )
    sign_in = await sessions.take_sign_in(state)
    if sign_in is None:
        return _login_page(
            request, runtime, HOME, "Innloggingen er utløpt eller brukt. Prøv igjen.", status=400
        )
    if "error" in query or "code" not in query:
        return _login_page(
            request, runtime, sign_in.next_path, "Innloggingen ble avbrutt.", status=401
        )
    try:
        who = await oidc.sign_in(
            str(request.base_url),
            code=query["code"],
            code_verifier=sign_in.code_verifier,
            nonce=sign_in.nonce,
        )
    except SignInFailed as exc:
        return _login_page(request, runtime, sign_in.next_path, exc.reason, status=401)
    session_id, _ = await sessions.open(
        who.name, who.subject, runtime.settings.review_session_minutes
    )
    # A page, not a redirect: the SameSite=Strict session cookie is sent from the next
    # navigation on, which is then one within this site.
    response = page(request, "signed_in.html", None, {"next": sign_in.next_path, "name": who.name})
    _set_session_cookie(request, response, SESSION_PREFIX + session_id)
    response.delete_cookie(SIGN_IN_COOKIE, path="/review/callback")
    return response


@router.post("/logout")
async def logout(request: Request, reviewer: ReviewerDep, runtime: RuntimeDep) -> Response:
    cookie = request.cookies.get(COOKIE, "")
    target = "/review/login?signed_out=1"
    oidc = _oidc(request)
    if cookie.startswith(SESSION_PREFIX):
        await ReviewSessions(runtime.engines).end(cookie.removeprefix(SESSION_PREFIX))
        if oidc is not None:
            back = str(request.base_url).rstrip("/") + "/review/login?signed_out=1"
            target = await oidc.end_session_url(back) or target
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _set_session_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
