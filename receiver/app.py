"""The FastAPI application: lifespan wiring, middleware and routers.

``create_app(settings, run_consumers=True)`` is ``intake serve`` (gateway and consumers in one
process); ``run_consumers=False`` is ``intake gateway``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consumers.projector import Projector
from consumers.quarantine import QuarantineIndexer
from consumers.service import ConsumerService
from consumers.webhooks import WebhookDispatcher
from receiver.auth import verifier_for
from receiver.cursors import cursor_codec_for
from receiver.dpop import DpopVerifier
from receiver.jose import JosePolicy
from receiver.openapi import install_docs, install_openapi
from receiver.problems import install_problem_handlers
from receiver.ratelimit import RateLimiter
from receiver.review_oidc import OidcClient
from receiver.routes import (
    catalogue,
    completeness,
    coverage,
    messages,
    operations,
    persons,
    receipts,
    review_api,
    review_pages,
    review_signin,
    review_triage,
    slash,
    state,
    webhooks,
)
from receiver.slash.keys import SlashKeyStore
from receiver.submission import SubmissionService
from schemas.catalogue import load_catalogue
from schemas.events import CARE_TIMEZONE
from statestore.obligations import ObligationRepository
from statestore.webhooks import WebhookRepository
from wiring import __version__
from wiring.logs import begin_request_log, end_request_log
from wiring.metrics import ConsumerName, Metrics
from wiring.readiness import Readiness
from wiring.runtime import Runtime, open_runtime, settle_heap
from wiring.settings import Settings

log = logging.getLogger(__name__)

CORRELATION_HEADER = "x-correlation-id"


class RequestObservation:
    """Pure ASGI middleware: a correlation id on every request and response, and HTTP metrics
    labelled by route template (never by the raw path, which may hold ids)."""

    def __init__(self, app: ASGIApp, metrics_of: Any) -> None:
        self.app = app
        self._metrics_of = metrics_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(CORRELATION_HEADER.encode(), b"").decode("latin-1")
        correlation_id = incoming if 0 < len(incoming) <= 100 else str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        request_log = begin_request_log(correlation_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                # A handler may name the correlation itself (SLASH answers with the receipt id).
                if not any(name.lower() == CORRELATION_HEADER.encode() for name, _ in headers):
                    headers.append((CORRELATION_HEADER.encode(), correlation_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics: Metrics | None = self._metrics_of()
            if metrics is not None:
                route = scope.get("route")
                template = getattr(route, "path", "unmatched")
                metrics.http_requests.labels(template, scope["method"], f"{status // 100}xx").inc()
                metrics.http_duration.labels(template).observe(time.perf_counter() - started)
        # Not on an exception: the 500 handler runs outside this middleware (Starlette's
        # ServerErrorMiddleware) and its log line should still name the request. The next
        # request in this task starts its own fields anyway.
        end_request_log(request_log)


async def _refresh_codelists(runtime: Runtime, stop: asyncio.Event) -> None:
    """Reload imported code lists now and then, so an import reaches every replica."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), runtime.settings.codelist_refresh_seconds)
        if stop.is_set():
            return
        try:
            await runtime.codelists.refresh()
            runtime.metrics.record_codelists(runtime.codelists.registry)
        except Exception:  # keep validating with the lists we have; try again next time
            log.exception("code lists could not be reloaded")


async def _record_coverage(runtime: Runtime, stop: asyncio.Event) -> None:
    """Yesterday's coverage of every message type with obligations, as metrics, now and then."""
    repository = ObligationRepository(runtime.engines)
    while not stop.is_set():
        try:
            today = datetime.now(CARE_TIMEZONE).date()
            for message_type in sorted({m.message_type for m in runtime.catalogue}):
                figures = await repository.yesterday(message_type, today)
                runtime.metrics.record_coverage(message_type, *figures)
        except Exception:  # the metrics wait for the next round; nothing else depends on them
            log.exception("coverage could not be computed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), runtime.settings.coverage_refresh_seconds)


def create_app(
    settings: Settings,
    *,
    run_consumers: bool = True,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, registry) as runtime:
            app.state.runtime = runtime
            app.state.verifier = verifier_for(settings)
            app.state.cursors = cursor_codec_for(settings)
            app.state.dpop = DpopVerifier(
                policy=JosePolicy.from_settings(settings),
                max_age_seconds=settings.dpop_max_age_seconds,
            )
            app.state.slash_keys = SlashKeyStore.from_settings(settings)
            app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
            app.state.submissions = SubmissionService(runtime)
            app.state.review_oidc = OidcClient(settings) if settings.review_oidc_issuer else None
            app.state.consumers = {}
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(_refresh_codelists(runtime, stop), name="codelists"),
                asyncio.create_task(_record_coverage(runtime, stop), name="coverage"),
            ]
            if run_consumers:
                consumers: dict[ConsumerName, ConsumerService] = {
                    "projector": Projector(runtime),
                    "webhooks": WebhookDispatcher(runtime, WebhookRepository(runtime.engines)),
                    "quarantine": QuarantineIndexer(runtime),
                }
                for name, consumer in consumers.items():
                    app.state.consumers[name] = consumer
                    runtime.metrics.watch_consumer(name, consumer)
                    tasks.append(asyncio.create_task(consumer.run(stop), name=name))
            app.state.readiness = Readiness(runtime, app.state.consumers)
            settle_heap()
            try:
                yield
            finally:
                stop.set()
                for task in tasks:
                    try:
                        await asyncio.wait_for(task, timeout=15)
                    except TimeoutError:
                        log.error("consumer %s did not stop in time", task.get_name())
                    except Exception:
                        log.exception("consumer %s failed", task.get_name())
                await app.state.verifier.aclose()
                if app.state.review_oidc is not None:
                    await app.state.review_oidc.aclose()

    app = FastAPI(
        title="register-intake",
        version=__version__,
        summary="Daily reporting to KPR and NPR over HTTPS: validation, receipts, state.",
        lifespan=lifespan,
        docs_url=None,  # served from a package's assets instead (receiver.openapi.install_docs)
        redoc_url=None,
    )
    install_problem_handlers(app)
    install_openapi(app, load_catalogue(), dpop=settings.auth_dpop)
    install_docs(app)
    routers = (
        messages.router,
        receipts.router,
        slash.router,
        webhooks.router,
        completeness.router,
        coverage.router,
        coverage.pages,
        catalogue.router,
        state.router,
        persons.router,
        review_api.router,
        review_signin.router,
        review_triage.router,
        review_pages.router,
        operations.router,
    )
    for router in routers:
        app.include_router(router)
    review_pages.install(app)
    app.add_middleware(
        RequestObservation,
        metrics_of=lambda: getattr(getattr(app.state, "runtime", None), "metrics", None),
    )
    return app
