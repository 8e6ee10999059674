"""RFC 9457 problem details. Every error the API gives is a :class:`Problem` with a stable
``code`` that clients can branch on; the title and detail are for people.

What each code means for the message:

* 4xx codes (``malformed_json``, ``unsupported_media_type``, ``unknown_message_type``,
  ``payload_too_large``, ``no_items``, ``invalid_message``, ``unauthorized``, ``forbidden``,
  ``unit_mismatch``, ``idempotency_conflict``, ``not_found``, ``invalid_request``): refused as
  sent; nothing was stored; do not retry unchanged.
* ``log_unavailable`` (503, with ``Retry-After``): the message was not accepted; retry later with
  the same ``Idempotency-Key``. On Kafka part of it may have reached the log; its deterministic
  event ids make the retry apply every item exactly once.
* ``store_unavailable`` and ``storage_full`` (503, with ``Retry-After``): the state store could not
  be reached or written (database down or restarting, out of connections, read-only, or out of
  disk space for ``storage_full``). As for ``log_unavailable``: not accepted, retry with the same
  key. 503 rather than 507 for a full disk, so that every client that retries a 503 retries this.
* ``incomplete_body`` (400): the client closed the connection before sending the whole body
  (fewer bytes than its Content-Length); nothing was stored. Nobody reads this answer: it exists so
  that a client giving up is counted and logged as the client's failure, not as a server error.
* ``internal_error`` (500): a bug; the failure is logged by type and correlation id.
"""

from __future__ import annotations

import inspect
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from review.errors import InvalidQuery
from statestore.days import EARLIEST_DAY, LATEST_DAY

PROBLEM_JSON = "application/problem+json"
STORE_RETRY_AFTER_SECONDS = 5
log = logging.getLogger(__name__)


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail or title}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self, instance: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://register-intake.invalid/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "instance": instance,
        }
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        return body


def check_day(day: date | None, name: str) -> None:
    """Dates in queries stay within what the register can hold (and datetime can add to)."""
    if day is not None and not EARLIEST_DAY <= day <= LATEST_DAY:
        raise Problem(
            422,
            "invalid_date",
            "Date out of range",
            f"{name} must lie between {EARLIEST_DAY} and {LATEST_DAY}.",
        )


def problem_response(problem: Problem, instance: str) -> Response:
    return Response(
        content=orjson.dumps(problem.body(instance)),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


# SQLite primary result codes (the low byte) that retrying can cure: busy, locked, read-only,
# I/O error, full, cannot open.
_SQLITE_TRANSIENT = frozenset({5, 6, 8, 10, 13, 14})
# SQLSTATE classes of the same kind: connection exception, insufficient resources (disk full,
# out of memory, too many connections), operator intervention (shutdown, cannot connect now).
_SQLSTATE_TRANSIENT = ("08", "53", "57")
_DISK_FULL_SQLSTATE = "53100"
_SQLITE_FULL = 13
# SQLite's "database disk image is malformed" and "file is not a database": retrying does not
# cure them, an operator does (restore the file from a backup; docs/runbook.md IntakeNotReady).
_SQLITE_DAMAGED = frozenset({11, 26})


def store_problem(exc: BaseException) -> Problem | None:
    """The 503 for a store failure that retrying can cure; ``None`` for any other (a bug)."""
    full = damaged = False
    if isinstance(exc, PoolTimeoutError):  # every pooled connection busy
        transient = True
    elif isinstance(exc, DBAPIError):
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None)
        if isinstance(orig, sqlite3.Error):
            code = getattr(orig, "sqlite_errorcode", 0) & 0xFF
            transient, full = code in _SQLITE_TRANSIENT, code == _SQLITE_FULL
            damaged = code in _SQLITE_DAMAGED
        elif sqlstate:
            transient = str(sqlstate)[:2] in _SQLSTATE_TRANSIENT
            full = sqlstate == _DISK_FULL_SQLSTATE
        else:  # no SQLSTATE: the connection was lost or never made (see statestore.engine)
            transient = exc.connection_invalidated or isinstance(
                exc, OperationalError | InterfaceError
            )
    else:
        transient = False
    headers = {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}
    if damaged:
        log.error("the embedded store's file is damaged: restore it from a backup (runbook)")
        return Problem(
            503,
            "store_unavailable",
            "The store is not available",
            "The message was not accepted. Retry later with the same Idempotency-Key.",
            headers=headers,
            extra={"cause": "store_damaged"},
        )
    if not transient:
        return None
    if full:
        return Problem(
            503,
            "storage_full",
            "The store is out of disk space",
            "The message was not accepted. Retry later with the same Idempotency-Key.",
            headers=headers,
        )
    return Problem(
        503,
        "store_unavailable",
        "The store is not available",
        "The message was not accepted. Retry later with the same Idempotency-Key; "
        "whatever part of it was stored is applied only once.",
        headers=headers,
    )


@contextmanager
def store_failures_as_problems(on_failure: Callable[[], None]) -> Iterator[None]:
    """Turn a store failure that retrying can cure into its 503 :class:`Problem` (for callers
    that answer in their own format, like SLASH), calling ``on_failure`` (to count it); anything
    else passes unchanged."""
    try:
        yield
    except SQLAlchemyError as exc:
        problem = store_problem(exc)
        if problem is None:
            raise
        on_failure()
        log.warning("%s: %s", problem.code, type(exc).__name__)
        raise problem from exc


_STATUS_CODES = {
    400: ("invalid_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("invalid_request", "Invalid request"),
}


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_invalid_query(request: Request, exc: Exception) -> Response:
        """A review query the review package refused: answered as the 422 Problem it is, by
        whichever Problem handler is installed (the review pages answer with a page)."""
        assert isinstance(exc, InvalidQuery)
        problem = Problem(422, exc.code, exc.title, exc.detail)
        answer = request.app.exception_handlers[Problem](request, problem)
        response: Response = await answer if inspect.isawaitable(answer) else answer
        return response

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code, title = _STATUS_CODES.get(exc.status_code, ("http_error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        problem = Problem(exc.status_code, code, title, detail, headers=dict(exc.headers or {}))
        return problem_response(problem, request.url.path)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        problem = Problem(
            422, "invalid_request", "Invalid request parameters", extra={"errors": errors}
        )
        return problem_response(problem, request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None and isinstance(exc, SQLAlchemyError):
            runtime.metrics.store_errors.labels("gateway").inc()
        # A bug, never bad input: logged by type and correlation id only (no request content).
        log.error(
            "unexpected %s on %s %s (correlation id %s)",
            type(exc).__name__,
            request.method,
            request.scope.get("route", None) and getattr(request.scope["route"], "path", "?"),
            getattr(request.state, "correlation_id", "-"),
            exc_info=exc,
        )
        problem = Problem(
            500,
            "internal_error",
            "Internal error",
            "The failure is logged; the request may be retried.",
        )
        return problem_response(problem, request.url.path)

    async def on_store_error(request: Request, exc: Exception) -> Response:
        problem = store_problem(exc)
        if problem is None:
            return await on_unexpected(request, exc)
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.metrics.store_errors.labels("gateway").inc()
        log.warning(
            "%s on %s %s: %s (correlation id %s)",
            problem.code,
            request.method,
            request.scope.get("route", None) and getattr(request.scope["route"], "path", "?"),
            type(exc).__name__,
            getattr(request.state, "correlation_id", "-"),
        )
        return problem_response(problem, request.url.path)

    async def on_client_disconnect(request: Request, exc: Exception) -> Response:
        log.info(
            "client closed the connection before the whole body arrived (correlation id %s)",
            getattr(request.state, "correlation_id", "-"),
        )
        problem = Problem(
            400,
            "incomplete_body",
            "The body was not sent in full",
            "The connection closed before the whole body arrived; nothing was stored.",
        )
        return problem_response(problem, request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(InvalidQuery, on_invalid_query)
    app.add_exception_handler(ClientDisconnect, on_client_disconnect)
    app.add_exception_handler(DBAPIError, on_store_error)
    app.add_exception_handler(PoolTimeoutError, on_store_error)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)
