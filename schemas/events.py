"""Events: what one accepted item becomes in the log, and how ids are derived.

Ids are deterministic so that a retried submission is recognised wherever it is seen again:

* ``receipt_id`` comes from the unit and its idempotency scope (the ``Idempotency-Key``, or the
  body's SHA-256 when there is none), so a retry after a crash finds the same receipt;
* ``event_id`` comes from the unit, model, body digest and item position, so the same content
  delivered twice (under any key) produces the same events, and the projector applies them once.
"""

from __future__ import annotations

import hashlib
import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from schemas.avro_writer import SplitWriter
from schemas.catalogue import MessageModel
from schemas.items import ItemSpec, ModelItem, field_value
from schemas.wire import event_namespace, event_type_name

_NAMESPACE = uuid.UUID("6f1f5c2e-3a7d-5b8e-9c41-2d0a7e8b4f10")
# Care happens in Norway: a date without a time means that day's start there.
CARE_TIMEZONE = ZoneInfo("Europe/Oslo")


def parse_valid_time(value: str) -> datetime:
    """A valid time from a date-time (kept with its offset) or a date (start of day in Norway)."""
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), time(0), CARE_TIMEZONE)
    return datetime.fromisoformat(value)


def receipt_id_for(unit: str, idempotency_scope: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"receipt\x1f{unit}\x1f{idempotency_scope}"))


def event_id_for(unit: str, model_key: str, body_sha256: str, item_index: int) -> str:
    """The name-based UUID (version 5, in ``_NAMESPACE``) of ``event``, the unit, the model key,
    the body digest and the item index joined by ``\\x1f``, as text. A message's events share
    all but the index, so the SHA-1 of that shared prefix is computed once per message and
    copied for each item."""
    digest = _event_id_prefix(unit, model_key, body_sha256).copy()
    digest.update(str(item_index).encode())
    return _uuid5_text(digest.hexdigest())


@lru_cache(maxsize=64)
def _event_id_prefix(unit: str, model_key: str, body_sha256: str) -> Any:
    name = f"event\x1f{unit}\x1f{model_key}\x1f{body_sha256}\x1f"
    return hashlib.sha1(_NAMESPACE.bytes + name.encode(), usedforsecurity=False)


def _uuid5_text(sha1_hex: str) -> str:
    """What ``str(uuid.UUID(bytes=sha1_digest[:16], version=5))`` gives, from the SHA-1's hex
    digest, without the object: the version nibble set to 5, the variant bits to RFC 4122's."""
    h = sha1_hex
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


# The first hex digit of the clock sequence with its top two bits set to 10 (the RFC 4122 variant).
_VARIANT = {c: "89ab"[int(c, 16) & 0b11] for c in "0123456789abcdef"}


@dataclass(slots=True)  # not frozen: a frozen init took 2.4 µs per event here; never mutated
class Event:
    event_id: str
    receipt_id: str
    item_index: int
    unit: str
    message_type: str
    version: int
    object_id: str
    action: str
    valid_time: datetime
    recorded_time: datetime
    clinical_time: str | None
    context: dict[str, Any]
    payload: dict[str, Any]
    payload_type: str  # full Avro name of the item record

    @property
    def key(self) -> bytes:
        """The log key: one object's events share it, so they stay in one partition, in order."""
        return f"{self.unit}\x1f{self.object_id}".encode()

    def to_avro(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "receipt_id": self.receipt_id,
            "item_index": self.item_index,
            "unit": self.unit,
            "message_type": self.message_type,
            "version": self.version,
            "object_id": self.object_id,
            "action": self.action,
            "valid_time": self.valid_time,
            "recorded_time": self.recorded_time,
            "clinical_time": self.clinical_time,
            "context": self.context,
            "payload_type": self.payload_type,
            "payload": (self.payload_branch, self.payload),
        }

    @property
    def payload_branch(self) -> str:
        """The event schema's name of the item record (:mod:`schemas.wire`)."""
        return event_type_name(event_namespace(self.message_type, self.version), self.payload_type)

    @classmethod
    def from_avro(cls, datum: dict[str, Any]) -> Event:
        payload = datum["payload"]
        if isinstance(payload, tuple):  # a union of several item records names its branch
            payload = payload[1]
        return cls(
            event_id=datum["event_id"],
            receipt_id=datum["receipt_id"],
            item_index=datum["item_index"],
            unit=datum["unit"],
            message_type=datum["message_type"],
            version=datum["version"],
            object_id=datum["object_id"],
            action=datum["action"],
            valid_time=datum["valid_time"],
            recorded_time=datum["recorded_time"],
            clinical_time=datum["clinical_time"],
            context=datum["context"],
            payload=payload,
            payload_type=datum["payload_type"],
        )


# The envelope fields every event of a message shares, and the one its block's items share: their
# Avro bytes are made once per message (once per block for the context), not once per event.
_SHARED_FIELDS = frozenset({"receipt_id", "unit", "message_type", "version", "recorded_time"})
_BLOCK_FIELDS = frozenset({"context"})


class EventBuilder:
    """Makes the events of one message's valid items, and their Avro encoding; what they share
    (the event id prefix, the unit, receipt and recorded time and their bytes, how each item
    kind's fields are read) is worked out once, not per item."""

    def __init__(
        self,
        model: MessageModel,
        *,
        unit: str,
        receipt_id: str,
        body_sha256: str,
        recorded_time: datetime,
    ) -> None:
        self._model = model
        self._unit = unit
        self._receipt_id = receipt_id
        self._recorded_time = recorded_time
        self._id_prefix = _event_id_prefix(unit, model.key, body_sha256)
        self._readers: dict[str, _ItemReader] = {}  # by array field
        namespace = event_namespace(model.message_type, model.version)
        self._branches = {  # the event schema's name of each item record
            spec.record_name: event_type_name(namespace, spec.record_name)
            for spec in model.item_specs
        }
        self._writer: SplitWriter | None = None  # these two set by the first encode()
        self._write: Callable[..., bytes] | None = None
        # Encoded contexts by id(): each entry keeps its dict alive, so no id is reused meanwhile.
        self._contexts: dict[int, tuple[dict[str, Any], bytes]] = {}

    def __call__(self, item: ModelItem) -> Event:
        """The event of an item that passed validation (``item.value`` is set)."""
        value = item.value
        assert value is not None, "only valid items become events"
        spec = item.spec
        reader = self._readers.get(spec.array_field)
        if reader is None:
            reader = self._readers[spec.array_field] = _ItemReader(spec)
        valid = reader.valid_time(value)
        digest = self._id_prefix.copy()
        digest.update(str(item.index).encode())
        # Positional, in the order of Event's fields: this runs for every accepted item.
        return Event(
            _uuid5_text(digest.hexdigest()),
            self._receipt_id,
            item.index,
            self._unit,
            self._model.message_type,
            self._model.version,
            str(reader.object_id(value)),
            spec.action_of(value),
            parse_valid_time(valid) if valid else self._recorded_time,
            self._recorded_time,
            reader.clinical_time(value),
            item.context,
            value,
            spec.record_name,
        )

    def encode(self, event: Event) -> bytes:
        """``model.event_codec.encode(event.to_avro())``, the same bytes, for one of this
        builder's events; what its events share is encoded once."""
        codec = self._model.event_codec
        if (
            event.receipt_id is not self._receipt_id
            or event.recorded_time is not self._recorded_time
        ):
            return codec.encode(event.to_avro())  # not one of this builder's events
        try:
            write = self._write or self._bind()
            context = event.context
            cached = self._contexts.get(id(context))
            if cached is None:
                assert self._writer is not None  # bound
                encoded = self._writer.encode_field("context", context)
                cached = self._contexts[id(context)] = (context, encoded)
            return write(  # the varying fields, in _VARYING's order
                event.event_id,
                event.item_index,
                event.object_id,
                event.action,
                event.valid_time,
                event.clinical_time,
                cached[1],
                event.payload_type,
                (self._branches[event.payload_type], event.payload),
            )
        except Exception:  # anything unusual (or invalid) is for the whole-record path to decide
            return codec.encode(event.to_avro())

    def _bind(self) -> Callable[..., bytes]:
        writer = self._model.event_codec.split_writer(_SHARED_FIELDS, _BLOCK_FIELDS)
        if writer.varying != _VARYING:
            raise ValueError(f"the event schema's fields are not in the order {_VARYING}")
        self._writer = writer
        self._write = writer.bind(
            {
                "receipt_id": self._receipt_id,
                "unit": self._unit,
                "message_type": self._model.message_type,
                "version": self._model.version,
                "recorded_time": self._recorded_time,
            }
        )
        return self._write


# The arguments of EventBuilder.encode's writer: the event schema's fields but the shared ones.
_VARYING = (
    "event_id",
    "item_index",
    "object_id",
    "action",
    "valid_time",
    "clinical_time",
    "context",
    "payload_type",
    "payload",
)


class _ItemReader:
    """Reads an item kind's object id, valid time and clinical time: a plain ``dict.get`` for
    a top-level field (the usual case), :func:`field_value` for a dotted path, None for none."""

    def __init__(self, spec: ItemSpec) -> None:
        self.object_id = _getter(spec.object_id_field)
        self.valid_time = _getter(spec.valid_time_field)
        self.clinical_time = _getter(spec.clinical_time_field)


def _getter(dotted: str | None) -> Callable[[dict[str, Any]], Any]:
    if dotted is None:
        return lambda _value: None
    if "." not in dotted:
        return operator.methodcaller("get", dotted)  # value.get(dotted), without a Python frame
    return lambda value: field_value(value, dotted)


def event_for_item(
    model: MessageModel,
    item: ModelItem,
    *,
    unit: str,
    receipt_id: str,
    body_sha256: str,
    recorded_time: datetime,
) -> Event:
    """The event of one valid item (:class:`EventBuilder` for a message's items)."""
    build = EventBuilder(
        model,
        unit=unit,
        receipt_id=receipt_id,
        body_sha256=body_sha256,
        recorded_time=recorded_time,
    )
    return build(item)
