"""Submitting a message: validate → reserve the receipt → produce events → confirm → answer.

The order is what makes retries safe. The receipt id and event ids are derived from the unit and
the body (see :mod:`schemas.events`), so a retry after any failure finds the same receipt and
produces the same events, which the projector applies once. ``202`` is sent only after the log
has stored every record of the message. When the log or the store fails on the way, the answer
is 503 with ``Retry-After`` (``log_unavailable``, ``store_unavailable``, ``storage_full``).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from eventlog.port import LogUnavailableError, ProduceRecord
from identity.pseudonyms import VaultEntry
from receiver.auth import Principal
from receiver.problems import Problem, store_failures_as_problems
from schemas.catalogue import MessageModel
from schemas.events import Event, EventBuilder, receipt_id_for
from statestore.receipts import NewReceipt, NewReceiptItem, ReceiptView
from validators.findings import has_errors
from validators.structure import ExtractedItem
from wiring.logs import bind_log_fields
from wiring.runtime import Runtime

RETRY_AFTER_SECONDS = 5
NOT_KEPT = '{"not_kept": "nested too deeply to keep for review"}'
# A rejected item larger than this as JSON is kept in the clear (masked) as a note only.
MAX_SHOWN_BYTES = 256 * 1024
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SubmissionMeta:
    idempotency_key: str | None
    vendor: str | None
    software: str | None
    software_version: str | None
    correlation_id: str
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class SubmissionResult:
    receipt: dict[str, Any]
    replayed: bool  # an earlier submission's receipt, returned for an idempotent retry


class SubmissionService:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def submit(
        self,
        principal: Principal,
        model: MessageModel,
        body: bytes,
        message: Any,
        meta: SubmissionMeta,
        *,
        dry_run: bool = False,
        atomic: bool = False,
    ) -> SubmissionResult:
        received_at = datetime.now(UTC)
        result = self._rt.validators[model.key].validate(
            message, self._rt.validation_context(), body=body
        )
        if has_errors(result.message_findings):
            raise Problem(
                422,
                "invalid_message",
                "The message does not follow its model",
                "Errors outside the items make the whole message unreadable; nothing was stored.",
                extra={"findings": [f.as_dict() for f in result.message_findings]},
            )
        items = result.items
        if not items:
            raise Problem(
                422, "no_items", "The message has no items", "Send at least one item or deletion."
            )
        if len(items) > self._rt.settings.max_items:
            raise Problem(
                413,
                "too_many_items",
                "Too many items in one message",
                f"At most {self._rt.settings.max_items} items per message; split the delivery.",
            )
        for unit in {str(i.context.get(model.unit_field)) for i in items}:
            if unit != principal.unit:
                raise Problem(
                    403,
                    "unit_mismatch",
                    "The message is for another unit",
                    f"The token reports for {principal.unit}; a block names another "
                    "organisation number.",
                )

        body_sha256 = hashlib.sha256(body).hexdigest()
        # The model is part of the scope: the same bytes sent as another type are another message.
        scope = f"{model.key}\x1f{meta.idempotency_key or 'sha256:' + body_sha256}"
        receipt_id = receipt_id_for(principal.unit, scope)
        bind_log_fields(unit=principal.unit, receipt_id=receipt_id)  # SLASH skips get_principal
        build_event = EventBuilder(
            model,
            unit=principal.unit,
            receipt_id=receipt_id,
            body_sha256=body_sha256,
            recorded_time=received_at,
        )
        vault_entries = pseudonymise(self._rt, model, items)
        events: dict[int, Event] = {
            item.index: build_event(item) for item in items if item.value is not None
        }
        new_receipt = NewReceipt(
            receipt_id=receipt_id,
            unit=principal.unit,
            message_type=model.message_type,
            version=model.version,
            vendor=meta.vendor,
            software=meta.software,
            software_version=meta.software_version,
            idempotency_key=meta.idempotency_key,
            body_sha256=body_sha256,
            received_at=received_at,
            items=[_receipt_item(item, events.get(item.index)) for item in items],
            sequence=meta.sequence,
        )
        rejected = len(items) - len(events)
        if atomic and rejected:
            preview = ReceiptView.preview(new_receipt, stage="dry_run")
            raise Problem(
                422,
                "rejected_atomic",
                "Items were rejected and atomic=true was asked",
                f"{rejected} of {len(items)} items have errors; nothing was stored.",
                extra={"receipt": preview.as_dict()},
            )
        if dry_run:
            return SubmissionResult(
                ReceiptView.preview(new_receipt, stage="dry_run").as_dict(), replayed=False
            )

        with store_failures_as_problems(self._rt.metrics.store_errors.labels("gateway").inc):
            outcome, stage = await self._rt.receipts.reserve(new_receipt)
            if outcome == "conflict":
                raise Problem(
                    409,
                    "idempotency_conflict",
                    "Idempotency-Key reused with another body",
                    "This key was used for a different message; use a new key for new content.",
                )
            if outcome == "existing" and stage != "received":
                stored = await self._rt.receipts.get(receipt_id)
                assert stored is not None
                return SubmissionResult(stored.as_dict(), replayed=True)

            await self._rt.vault.store(vault_entries)  # before the log names a pseudonym
            await self._produce(
                model, principal, new_receipt, message, items, events, build_event, meta
            )
            await self._rt.receipts.mark_validated(receipt_id, principal.unit)
        self._rt.receipt_changed.notify()
        self._count(model, items)
        log.info("%s stored: %d items accepted, %d rejected", model.key, len(events), rejected)
        receipt = ReceiptView.preview(new_receipt, stage="validated").as_dict()
        self._rt.metrics.receipts.labels(
            model.message_type, str(model.version), receipt["status"]
        ).inc()
        return SubmissionResult(receipt, replayed=outcome == "existing")

    async def _produce(
        self,
        model: MessageModel,
        principal: Principal,
        receipt: NewReceipt,
        message: Any,
        items: list[ExtractedItem],
        events: dict[int, Event],
        build_event: EventBuilder,
        meta: SubmissionMeta,
    ) -> None:
        topics = self._rt.topics
        accepted_topic = topics.accepted(model.message_type, model.version)
        common = (
            ("receipt_id", receipt.receipt_id.encode()),
            ("message_type", model.message_type.encode()),
            ("version", str(model.version).encode()),
            ("unit", principal.unit.encode()),
            ("trace_id", meta.correlation_id.encode()),
        )
        quarantine_codec = self._rt.catalogue.quarantine_codec
        records = []
        for item in items:
            event = events.get(item.index)
            if event is not None:
                records.append(
                    ProduceRecord(
                        accepted_topic,
                        event.key,
                        build_event.encode(event),
                        (("event_id", event.event_id.encode()), *common),
                    )
                )
            else:
                block = _raw_block(model, message, item)
                item_json, block_json = _as_sent(item.raw), _as_sent(block)
                records.append(
                    ProduceRecord(
                        topics.quarantine,
                        f"{principal.unit}\x1f{item.object_id or ''}".encode(),
                        quarantine_codec.encode(
                            {
                                "receipt_id": receipt.receipt_id,
                                "item_index": item.index,
                                "path": item.path,
                                "unit": principal.unit,
                                "message_type": model.message_type,
                                "version": model.version,
                                "object_id": item.object_id,
                                "recorded_time": receipt.received_at,
                                # In the clear only masked; as sent only sealed (docs/privacy.md).
                                "item_json": self._masked(model, item_json, item.raw, item.path),
                                "block_json": self._masked(model, block_json, block, None),
                                "sealed": self._rt.identities.seal_as_sent(
                                    receipt.receipt_id, item.index, item_json, block_json
                                ),
                                "findings": [f.as_dict() for f in item.findings],
                            }
                        ),
                        common,
                    )
                )
        await produce_or_unavailable(
            self._rt,
            records,
            "The message was not accepted and nothing of it will be applied. Retry later "
            "with the same Idempotency-Key.",
        )

    def _masked(self, model: MessageModel, as_sent: str, value: Any, path: str | None) -> str:
        if as_sent == NOT_KEPT:  # nested deeper than orjson writes (and masking walks)
            return as_sent
        if len(as_sent) > MAX_SHOWN_BYTES:
            # Nobody reads a 15 MB item on a page; a second (masked) copy of it would double
            # the record past the log's record size. The sealed copy keeps it whole.
            return orjson.dumps(
                {"not_shown": f"{len(as_sent):,} bytes: too large to show; reveal or replay it"}
            ).decode()
        return orjson.dumps(self._rt.identities.masked(model, value, path)).decode()

    def _count(self, model: MessageModel, items: list[ExtractedItem]) -> None:
        # Counted per message, not per item: looking up a labelled child costs more than the rest.
        metrics = self._rt.metrics
        version = str(model.version)
        outcomes = Counter("accepted" if item.value is not None else "rejected" for item in items)
        for outcome, count in outcomes.items():
            metrics.items.labels(model.message_type, version, outcome).inc(count)
        findings = Counter((f.rule_id, f.severity) for item in items for f in item.findings)
        for (rule_id, severity), count in findings.items():
            metrics.findings.labels(rule_id, severity).inc(count)


def pseudonymise(
    runtime: Runtime, model: MessageModel, items: list[ExtractedItem]
) -> list[VaultEntry]:
    """Replace the person identifiers of the accepted items (validated on their plaintext) by
    pseudonyms, in place; the sealed identifiers, for the vault."""
    entries: list[VaultEntry] = []
    for item in items:
        if item.value is not None:
            item.value, sealed = runtime.identities.item(model, item.spec.array_field, item.value)
            entries.extend(sealed)
    return entries


def _as_sent(value: Any) -> str:
    """A rejected item (or its block) as JSON for review. orjson writes at most 254 levels of
    nesting, a parsed body may hold up to 1024 and the models need fewer than ten: an item nested
    deeper than orjson writes is kept as a note, instead of failing the whole message with 500."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return NOT_KEPT


async def produce_or_unavailable(
    runtime: Runtime, records: list[ProduceRecord], detail: str
) -> None:
    """Store ``records`` in the event log, or answer 503 ``log_unavailable`` (with ``detail``
    saying what the client should do) when it cannot."""
    with log_unavailable_as_problem(detail):
        await runtime.produce(records)


@contextmanager
def log_unavailable_as_problem(detail: str) -> Iterator[None]:
    """The event log's :class:`LogUnavailableError` inside, as a 503 ``log_unavailable``
    Problem with ``Retry-After`` and ``detail`` saying what the client should do."""
    try:
        yield
    except LogUnavailableError as exc:
        log.warning("log_unavailable: %s", exc)
        raise Problem(
            503,
            "log_unavailable",
            "The event log is not available",
            detail,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc


def _raw_block(model: MessageModel, message: Any, item: ExtractedItem) -> dict[str, Any]:
    """The block an item came in, as sent, without any item list (``/<block>/<list>/<i>``)."""
    block = message[int(item.path.split("/")[1])]
    item_lists = {spec.array_field for spec in model.item_specs}
    return {k: v for k, v in block.items() if k not in item_lists}


def _receipt_item(item: ExtractedItem, event: Event | None) -> NewReceiptItem:
    return NewReceiptItem(  # positional: one per item
        item.index,
        item.path,
        event.object_id if event else item.object_id,  # the same id, found once
        event.event_id if event else None,
        "accepted" if event else "rejected",
        [f.as_dict() for f in item.findings] if item.findings else [],
    )
