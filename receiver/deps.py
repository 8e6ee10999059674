"""Request-scoped dependencies, read through ``Annotated`` types; the lifespan fills
``app.state`` once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from intake.runtime import Runtime
from receiver.auth import AuthError, Principal, TokenVerifier
from receiver.problems import Problem
from receiver.submission import SubmissionService
from schemas.catalogue import MessageModel


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_submissions(request: Request) -> SubmissionService:
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


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "A valid access token is required",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="register-intake"'},
    )


def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("Send 'Authorization: Bearer <token>'.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Send 'Authorization: Bearer <token>'.")
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return verifier.verify(token.strip())
    except AuthError as exc:
        raise _unauthorized("The token is invalid or expired.") from exc


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if scope not in principal.scopes:
            raise Problem(
                403,
                "insufficient_scope",
                "The token lacks a scope",
                f"This endpoint needs the scope {scope}.",
            )
        return principal

    return check


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SubmissionsDep = Annotated[SubmissionService, Depends(get_submissions)]
Reporter = Annotated[Principal, Depends(require_scope("intake:report"))]
StateReader = Annotated[Principal, Depends(require_scope("intake:state"))]
Admin = Annotated[Principal, Depends(require_scope("intake:admin"))]
