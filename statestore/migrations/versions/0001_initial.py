"""Receipts, event history, last-known state and consumer offsets.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from statestore.tables import Json, Sequence64, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column("receipt_id", sa.String(36), primary_key=True),
        sa.Column("unit", sa.String(9), nullable=False),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("vendor", sa.String(200)),
        sa.Column("software", sa.String(200)),
        sa.Column("software_version", sa.String(100)),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("item_count", sa.Integer, nullable=False),
        sa.Column("accepted_count", sa.Integer, nullable=False),
        sa.Column("rejected_count", sa.Integer, nullable=False),
    )
    op.create_index("ix_receipts_unit_received", "receipts", ["unit", "received_at"])
    op.create_table(
        "receipt_items",
        sa.Column("receipt_id", sa.String(36), nullable=False),
        sa.Column("item_index", sa.Integer, nullable=False),
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("object_id", sa.String(200)),
        sa.Column("event_id", sa.String(36)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("findings", Json, nullable=False),
        sa.PrimaryKeyConstraint("receipt_id", "item_index"),
        sa.ForeignKeyConstraint(["receipt_id"], ["receipts.receipt_id"], ondelete="CASCADE"),
    )
    op.create_index("ix_receipt_items_event", "receipt_items", ["event_id"])
    op.create_table(
        "events",
        sa.Column("seq", Sequence64, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("unit", sa.String(9), nullable=False),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("valid_time", UTCDateTime, nullable=False),
        sa.Column("recorded_time", UTCDateTime, nullable=False),
        sa.Column("clinical_time", sa.String(40)),
        sa.Column("receipt_id", sa.String(36), nullable=False),
        sa.Column("item_index", sa.Integer, nullable=False),
        sa.Column("context", Json, nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("source_topic", sa.String(255), nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column("applied_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_events_object", "events", ["unit", "message_type", "object_id"])
    op.create_table(
        "objects",
        sa.Column("unit", sa.String(9), nullable=False),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", Json),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("event_count", sa.Integer, nullable=False),
        sa.Column("last_event_id", sa.String(36), nullable=False),
        sa.Column("valid_time", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("unit", "message_type", "object_id"),
    )
    op.create_table(
        "consumer_offsets",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "topic", "partition"),
    )


def downgrade() -> None:
    for table in ("consumer_offsets", "objects", "events", "receipt_items", "receipts"):
        op.drop_table(table)
