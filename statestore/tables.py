"""Table definitions. Alembic migrations in ``statestore/migrations`` create exactly these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    types,
)
from sqlalchemy.dialects.postgresql import JSONB


class UTCDateTime(types.TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out, whatever the database keeps."""

    impl = types.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
Sequence64 = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

receipts = Table(
    "receipts",
    metadata,
    Column("receipt_id", String(36), primary_key=True),
    Column("unit", String(9), nullable=False),
    Column("message_type", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("vendor", String(200)),
    Column("software", String(200)),
    Column("software_version", String(100)),
    Column("idempotency_key", String(255)),
    Column("body_sha256", String(64), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    # received: reserved, events not yet confirmed by the log; validated: all events stored.
    Column("stage", String(16), nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("accepted_count", Integer, nullable=False),
    Column("rejected_count", Integer, nullable=False),
    Column("sequence", BigInteger),  # the sender's x-message-sequence, when given
    Index("ix_receipts_unit_received", "unit", "received_at"),
)

receipt_items = Table(
    "receipt_items",
    metadata,
    Column("receipt_id", String(36), nullable=False),
    Column("item_index", Integer, nullable=False),
    Column("path", String(200), nullable=False),
    Column("object_id", String(200)),
    Column("event_id", String(36)),
    Column("outcome", String(16), nullable=False),
    Column("findings", Json, nullable=False),
    PrimaryKeyConstraint("receipt_id", "item_index"),
    # No foreign key to receipts and no index by event id (migration 0007): items are written
    # in the statement that creates their receipt, and a per-row check cost the database more
    # than the row itself.
)

events = Table(
    "events",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("unit", String(9), nullable=False),
    Column("message_type", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("object_id", String(200), nullable=False),
    Column("action", String(32), nullable=False),
    Column("valid_time", UTCDateTime, nullable=False),
    Column("recorded_time", UTCDateTime, nullable=False),
    Column("clinical_time", String(40)),
    Column("receipt_id", String(36), nullable=False),
    Column("item_index", Integer, nullable=False),
    Column("context", Json, nullable=False),
    Column("payload", Json, nullable=False),
    Column("source_topic", String(255), nullable=False),
    Column("source_partition", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
    Index("ix_events_object", "unit", "message_type", "object_id"),
)

objects = Table(
    "objects",
    metadata,
    Column("unit", String(9), nullable=False),
    Column("message_type", String(64), nullable=False),
    Column("object_id", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", Json),
    Column("deleted", Boolean, nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("last_event_id", String(36), nullable=False),
    Column("valid_time", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("context", Json),
    Column("clinical_time", String(40)),
    PrimaryKeyConstraint("unit", "message_type", "object_id"),
)

# The object's states over valid time: one row per version, [valid_from, valid_to).
# Point-in-time statistics read this table (see docs/state-queries.md).
object_versions = Table(
    "object_versions",
    metadata,
    Column("unit", String(9), nullable=False),
    Column("message_type", String(64), nullable=False),
    Column("object_id", String(200), nullable=False),
    Column("valid_from", UTCDateTime, nullable=False),
    Column("valid_to", UTCDateTime),
    Column("state", Json),
    Column("deleted", Boolean, nullable=False),
    Column("context", Json),
    Column("clinical_time", String(40)),
    Column("event_id", String(36), nullable=False),
    PrimaryKeyConstraint("unit", "message_type", "object_id", "valid_from"),
    Index("ix_object_versions_time", "message_type", "valid_from", "valid_to"),
)

# Integrity findings the fold made about events, recomputed whenever their object re-folds.
integrity_findings = Table(
    "integrity_findings",
    metadata,
    Column("event_id", String(36), nullable=False),
    Column("rule_id", String(20), nullable=False),
    Column("unit", String(9), nullable=False),
    Column("message_type", String(64), nullable=False),
    Column("object_id", String(200), nullable=False),
    Column("params", Json, nullable=False),
    PrimaryKeyConstraint("event_id", "rule_id"),
    Index("ix_integrity_object", "unit", "message_type", "object_id"),
)

# One row per process that answers /readyz: each probe writes its row, so readiness proves the
# store takes a write (wiring/readiness.py).
readiness_probes = Table(
    "readiness_probes",
    metadata,
    Column("instance", String(200), primary_key=True),
    Column("probed_at", UTCDateTime, nullable=False),
)

# Each pseudonym's person identifier, sealed (identity/keys.py); read only to re-identify.
identity_vault = Table(
    "identity_vault",
    metadata,
    Column("pseudonym", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Index("identity_vault_key_id", "key_id"),
)

# Where each person (pseudonym) is registered: every object whose events named them, with
# the span of clinical and recorded time (for citizen insight and the person timeline).
person_objects = Table(
    "person_objects",
    metadata,
    Column("pseudonym", String(64), nullable=False),
    Column("unit", String(9), nullable=False),
    Column("message_type", String(64), nullable=False),
    Column("object_id", String(200), nullable=False),
    Column("clinical_from", String(40)),
    Column("clinical_to", String(40)),
    Column("first_recorded", UTCDateTime, nullable=False),
    Column("last_recorded", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("pseudonym", "unit", "message_type", "object_id"),
)

# Every read of person-level data: who (subject, organisation, scope), when, what, why.
# Append-only: nothing updates or deletes its rows.
person_reads = Table(
    "person_reads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200)),
    Column("organisation", String(9), nullable=False),
    Column("scope", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("message_type", String(64)),
    Column("object_id", String(200)),
    Column("pseudonym", String(64)),
    Column("purpose", String(500)),
    Index("ix_person_reads_pseudonym", "pseudonym", "at"),
    Index("ix_person_reads_at", "at"),
)

consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer", String(100), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    PrimaryKeyConstraint("consumer", "topic", "partition"),
)

codelists = Table(
    "codelists",
    metadata,
    Column("codelist_id", String(100), primary_key=True),
    Column("title", String(300), nullable=False),
    Column("sample", Boolean, nullable=False),
    Column("source", String(300), nullable=False),
    Column("imported_at", UTCDateTime, nullable=False),
)

codelist_states = Table(
    "codelist_states",
    metadata,
    Column("codelist_id", String(100), nullable=False),
    Column("code", String(100), nullable=False),
    Column("effective", Date, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("display", String(500), nullable=False),
    PrimaryKeyConstraint("codelist_id", "code", "effective"),
    ForeignKeyConstraint(["codelist_id"], ["codelists.codelist_id"], ondelete="CASCADE"),
)

# A list's correspondence between versions: a code replaced by another from a day (municipality
# numbers after a reform; validators/klass.py).
codelist_changes = Table(
    "codelist_changes",
    metadata,
    Column("codelist_id", String(100), nullable=False),
    Column("old_code", String(100), nullable=False),
    Column("new_code", String(100), nullable=False),
    Column("changed_on", Date, nullable=False),
    PrimaryKeyConstraint("codelist_id", "old_code", "new_code", "changed_on"),
    ForeignKeyConstraint(["codelist_id"], ["codelists.codelist_id"], ondelete="CASCADE"),
)

# The receipts' change feed: one row each time a receipt changes (validated, applied, integrity),
# written in the same transaction as the change. ``txid`` is the writing transaction's id on
# PostgreSQL (0 on SQLite, where writers are serialised); readers page by (txid, seq) and stop at
# the oldest transaction still running, so a feed never skips a change that commits late.
receipt_changes = Table(
    "receipt_changes",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("txid", BigInteger, nullable=False),
    Column("unit", String(9), nullable=False),
    Column("receipt_id", String(36), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Index("ix_receipt_changes_unit", "unit", "txid", "seq"),
    Index("ix_receipt_changes_position", "txid", "seq"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("unit", String(9), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("secret", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", Sequence64, primary_key=True, autoincrement=True),
    Column("unit", String(9), nullable=False),
    Column("receipt_id", String(36), nullable=False),
    Column("change_seq", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # pending, delivered, parked
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", String(500)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

# Where a reader of the change feed that serves every unit (the webhook dispatcher) has got to.
feed_positions = Table(
    "feed_positions",
    metadata,
    Column("reader", String(100), primary_key=True),
    Column("txid", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

# --- review of rejected items (quality staff) ----------------------------------------------
# One row per item the gateway rejected, indexed from the quarantine topic by the quarantine
# indexer; ``status`` is the review workflow (see statestore/review/workflow.py).
review_items = Table(
    "review_items",
    metadata,
    Column("item_id", String(36), primary_key=True),
    Column("receipt_id", String(36), nullable=False),
    Column("item_index", Integer, nullable=False),
    Column("path", String(200), nullable=False),
    Column("unit", String(9), nullable=False),
    Column("vendor", String(200)),
    Column("software", String(200)),
    Column("software_version", String(100)),
    Column("message_type", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("object_id", String(200)),
    Column("received_at", UTCDateTime, nullable=False),
    Column("received_day", String(10), nullable=False),  # the day in Norway, YYYY-MM-DD
    Column("item_json", Json, nullable=False),
    Column("block_json", Json, nullable=False),
    # The item and its block as sent, sealed (identity/pseudonyms.py); the JSON columns are masked.
    Column("sealed", LargeBinary),
    Column("findings", Json, nullable=False),
    Column("status", String(24), nullable=False),
    Column("assignee", String(200)),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("replay_event_id", String(36)),
    Column("replayed_at", UTCDateTime),
    Index("ix_review_items_received", "received_at"),
    Index("ix_review_items_unit", "unit", "received_at"),
    Index("ix_review_items_status", "status", "received_at"),
    Index("ix_review_items_receipt", "receipt_id", "item_index", unique=True),
)

# The findings of each review item, one row each, for filtering and statistics by rule.
review_findings = Table(
    "review_findings",
    metadata,
    Column("item_id", String(36), nullable=False),
    Column("position", Integer, nullable=False),
    Column("rule_id", String(20), nullable=False),
    Column("level", String(16), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("path", String(500), nullable=False),
    # The problem the finding belongs to (statestore/review/problems.py): the field, the
    # offending value where it names a code (masked), and the id of the whole key.
    Column("field", String(200)),
    Column("value", String(200)),
    Column("problem", String(16)),
    PrimaryKeyConstraint("item_id", "position"),
    ForeignKeyConstraint(["item_id"], ["review_items.item_id"], ondelete="CASCADE"),
    Index("ix_review_findings_rule", "rule_id", "item_id"),
    Index("ix_review_findings_problem", "problem", "item_id"),
)

# What happened to a review item: notes, status and assignee changes, replays (append-only).
review_history = Table(
    "review_history",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("item_id", String(36), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # note, status, assignee, replay
    Column("old_value", String(200)),
    Column("new_value", String(200)),
    Column("text", String(4000)),
    ForeignKeyConstraint(["item_id"], ["review_items.item_id"], ondelete="CASCADE"),
    Index("ix_review_history_item", "item_id", "seq"),
)

# Every read of a rejected item and every reveal of a masked identifier (append-only).
review_access_log = Table(
    "review_access_log",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(16), nullable=False),  # list, view, reveal, export, replay
    Column("item_id", String(36)),
    Column("path", String(500)),
    Column("reason", String(500)),
    Column("item_count", Integer),  # items shown or exported
    Column("total_count", Integer),  # items the filter matched (a list shows one page of them)
    Column("correlation_id", String(100)),
    Index("ix_review_access_item", "item_id", "seq"),
    Index("ix_review_access_at", "at"),
)

# Sign-ins to the review pages under way (OpenID Connect): what the callback must match, for
# ten minutes, taken once. Only the state's hash is kept, as with sessions.
review_sign_ins = Table(
    "review_sign_ins",
    metadata,
    Column("state_sha256", String(64), primary_key=True),
    Column("nonce", String(100), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("next_path", String(500), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# Signed-in quality staff. The browser holds the session id; the store holds its hash, who it
# is (the name the review shows; the provider's subject only hashed) and until when it holds.
review_sessions = Table(
    "review_sessions",
    metadata,
    Column("session_sha256", String(64), primary_key=True),
    Column("actor", String(200), nullable=False),
    Column("subject_sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Index("ix_review_sessions_expires", "expires_at"),
)

# The directory of reporting units, from Enhetsregisteret's bulk files (statestore/units.py):
# main units and their sub-units (the sites that report), with name, municipality and industry.
reporting_units = Table(
    "reporting_units",
    metadata,
    Column("orgnr", String(9), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("kind", String(10), nullable=False),  # enhet, underenhet
    Column("parent_orgnr", String(9)),
    Column("kommune_nr", String(4)),
    Column("industry_code", String(20)),
    Column("industry_text", String(300)),
    Column("organisation_form", String(20)),
    Column("imported_at", UTCDateTime, nullable=False),
    Index("ix_reporting_units_kommune", "kommune_nr"),
)

# Who must report what from when (statestore/obligations.py): a unit, reporting a message type,
# for a municipality when it reports on one's behalf. A change adds a row and ends the one it
# replaces (ended_at): the history is kept.
reporting_obligations = Table(
    "reporting_obligations",
    metadata,
    Column("id", Sequence64, primary_key=True, autoincrement=True),
    Column("unit", String(9), nullable=False),
    Column("kommune_nr", String(4)),
    Column("message_type", String(64), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date),  # the last day it holds (inclusive), or open
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("recorded_by", String(200), nullable=False),
    Column("ended_at", UTCDateTime),
    Column("ended_by", String(200)),
    Index("ix_reporting_obligations_type", "message_type", "valid_from"),
)
