"""Request-scoped dependencies, read through ``Annotated`` types; the lifespan fills
``app.state`` once.

No ``from __future__ import annotations`` here: :func:`require_scope`'s dependency names its
scope in an annotation, which FastAPI must read as an object, not as a string to resolve.
"""

import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security

from receiver.auth import AuthError, Principal, TokenVerifier
from receiver.dpop import DpopError, DpopVerifier
from receiver.jose import JosePolicy
from receiver.openapi import BEARER, DPOP
from receiver.problems import Problem
from receiver.ratelimit import RateLimiter
from receiver.submission import SubmissionService
from schemas.catalogue import MessageModel
from wiring.logs import bind_log_fields
from wiring.runtime import Runtime


# Dependencies are ``async def`` even when they do not wait: FastAPI runs a plain ``def``
# dependency in its thread pool, a hand-off that cost a fraction of a millisecond per request.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_submissions(request: Request) -> SubmissionService:
    service: SubmissionService = request.app.state.submissions
    return service


def published_model(runtime: Runtime, message_type: str, version: int) -> MessageModel:
    """The model named in a path, or 404 ``unknown_message_type``."""
    model = runtime.catalogue.get(message_type, version)
    if model is None:
        raise Problem(
            404,
            "unknown_message_type",
            "Unknown message type or version",
            f"{message_type} v{version} is not published; see GET /v1/message-types.",
        )
    return model


def _unauthorized(
    request: Request, detail: str, *, dpop: bool = False, error: str | None = None
) -> Problem:
    """401 ``unauthorized`` with the challenge of RFC 9449 §7.1 (DPoP: ``algs``, and ``error``
    once a credential was sent) or RFC 6750 §3 (Bearer)."""
    policy: JosePolicy = request.app.state.dpop.policy
    challenge = policy.challenge(
        "DPoP" if dpop else "Bearer", error=error, description=detail if error else None
    )
    return Problem(
        401,
        "unauthorized",
        "A valid access token is required",
        detail,
        headers={"WWW-Authenticate": challenge},
    )


async def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization")
    dpop = request.app.state.runtime.settings.auth_dpop
    expected = "dpop" if dpop else "bearer"
    if not header:
        raise _unauthorized(
            request, f"Send 'Authorization: {expected.title()} <token>'.", dpop=dpop
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != expected or not token:
        raise _unauthorized(
            request,
            f"Send 'Authorization: {expected.title()} <token>'.",
            dpop=dpop,
            error="invalid_request" if token else None,
        )
    verifier: TokenVerifier = request.app.state.verifier
    try:
        principal = await verifier.verify_async(token)
    except AuthError as exc:
        raise _unauthorized(
            request, "The token is invalid or expired.", dpop=dpop, error="invalid_token"
        ) from exc
    if dpop:
        proof = request.headers.get("dpop")
        if not proof or principal.bound_jkt is None:
            raise _unauthorized(
                request,
                "A DPoP-bound token and a DPoP proof are required.",
                dpop=True,
                error="invalid_dpop_proof" if principal.bound_jkt else "invalid_token",
            )
        dpop_verifier: DpopVerifier = request.app.state.dpop
        try:
            dpop_verifier.verify(
                proof,
                method=request.method,
                url=str(request.url),
                access_token=token,
                expected_jkt=principal.bound_jkt,
            )
        except DpopError as exc:
            raise _unauthorized(
                request,
                f"The DPoP proof was refused: {exc}.",
                dpop=True,
                error="invalid_dpop_proof",
            ) from exc
    bind_log_fields(unit=principal.unit)
    rate_limit(request, principal)
    return principal


def rate_limit(request: Request, principal: Principal) -> None:
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.acquire(f"{principal.unit}/{principal.client_id or ''}")
    if wait > 0:
        raise Problem(
            429,
            "rate_limited",
            "Too many requests",
            "Slow down and retry after the given number of seconds.",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    async def check(
        principal: Annotated[Principal, Depends(get_principal)],
        _bearer: Annotated[None, Security(BEARER, scopes=[scope])],
        _dpop: Annotated[None, Security(DPOP, scopes=[scope])],
    ) -> Principal:
        if scope not in principal.scopes:
            raise Problem(
                403,
                "insufficient_scope",
                "The token lacks a scope",
                f"This endpoint needs the scope {scope}.",
            )
        if (principal.pid is not None) != (scope == "intake:insight"):
            # A citizen's token reaches the citizen's own insight only, and only it does.
            raise Problem(
                403,
                "wrong_kind_of_token",
                "Not for this kind of token",
                "Insight needs a citizen's own token (pid); every other endpoint a unit's.",
            )
        return principal

    return check


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SubmissionsDep = Annotated[SubmissionService, Depends(get_submissions)]
Reporter = Annotated[Principal, Depends(require_scope("intake:report"))]
StateReader = Annotated[Principal, Depends(require_scope("intake:state"))]
Admin = Annotated[Principal, Depends(require_scope("intake:admin"))]
IdentityReader = Annotated[Principal, Depends(require_scope("intake:identity"))]
Citizen = Annotated[Principal, Depends(require_scope("intake:insight"))]
