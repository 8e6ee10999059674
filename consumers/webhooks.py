"""The webhook dispatcher: pushes receipt changes to the units that asked for it.

It reads the receipts' change feed (like any client of the pull feed, but for every unit),
queues a delivery for each change of a unit with a webhook, and sends due deliveries concurrently,
each bounded by a timeout, so a receiver that hangs or fails only delays its own deliveries.
Failed attempts are retried with exponential backoff and jitter and parked after
``webhook_max_attempts``; operators see and requeue parked deliveries at
``/v1/admin/webhook-deliveries``.

Each request is signed: ``Intake-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" keyed with the unit's secret>``. Receivers check the MAC and that t is recent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from datetime import UTC, datetime

import httpx
import orjson
from sqlalchemy.exc import SQLAlchemyError

from statestore.webhooks import Delivery, WebhookRepository, backoff
from wiring.runtime import Runtime

log = logging.getLogger(__name__)

READER = "webhooks"
SIGNATURE_HEADER = "Intake-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class WebhookDispatcher:
    def __init__(
        self,
        runtime: Runtime,
        repository: WebhookRepository,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._rt = runtime
        self._repo = repository
        settings = runtime.settings
        self._client = client or httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds, follow_redirects=False
        )
        self._rng = random.Random()  # noqa: S311  (retry jitter, not cryptography)
        self.healthy = False

    async def run(self, stop: asyncio.Event) -> None:
        poll = self._rt.settings.webhook_poll_seconds
        try:
            while not stop.is_set():
                try:
                    await self.step()
                    self.healthy = True
                except Exception as exc:  # a broken step must not end the dispatcher; try again
                    self.healthy = False
                    if isinstance(exc, SQLAlchemyError):
                        self._rt.metrics.store_errors.labels("webhooks").inc()
                    log.exception("webhook dispatcher step failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll)
        finally:
            await self._client.aclose()

    async def step(self) -> None:
        now = datetime.now(UTC)
        position = await self._repo.position(READER)
        changes = await self._rt.feed.read(position, 500)
        await self._repo.schedule(READER, changes, now)
        due = await self._repo.due(now, limit=50)
        if due:
            await asyncio.gather(*(self._deliver(d) for d in due))

    async def _deliver(self, delivery: Delivery) -> None:
        metrics = self._rt.metrics
        hook = await self._repo.get(delivery.unit)
        receipt = await self._rt.receipts.get(delivery.receipt_id)
        if hook is None or receipt is None:  # the unit removed its webhook meanwhile
            await self._repo.failed(delivery, "no webhook", retry_at=None)
            return
        body = orjson.dumps(
            {
                "type": "receipt.changed",
                "delivery_id": delivery.delivery_id,
                "receipt": receipt.as_dict(),
            }
        )
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, timestamp, body),
            "Intake-Delivery-Id": str(delivery.delivery_id),
        }
        try:
            response = await self._client.post(hook.url, content=body, headers=headers)
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        now = datetime.now(UTC)
        if error is None:
            await self._repo.delivered(delivery.delivery_id, now)
            metrics.webhook_deliveries.labels("delivered").inc()
            return
        settings = self._rt.settings
        if delivery.attempts + 1 >= settings.webhook_max_attempts:
            await self._repo.failed(delivery, error, retry_at=None)
            metrics.webhook_deliveries.labels("parked").inc()
            log.warning(
                "webhook delivery %s parked after %d attempts: %s",
                delivery.delivery_id,
                delivery.attempts + 1,
                error,
            )
            return
        delay = backoff(
            delivery.attempts + 1, settings.webhook_backoff_seconds, 0.5 + self._rng.random()
        )
        await self._repo.failed(delivery, error, retry_at=now + delay)
        metrics.webhook_deliveries.labels("failed").inc()
