"""The receipts' change feed, webhooks and their deliveries, message sequence numbers.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from statestore.tables import Sequence64, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("receipts") as receipts:
        receipts.add_column(sa.Column("sequence", sa.BigInteger))
    op.create_table(
        "receipt_changes",
        sa.Column("seq", Sequence64, primary_key=True, autoincrement=True),
        sa.Column("txid", sa.BigInteger, nullable=False),
        sa.Column("unit", sa.String(9), nullable=False),
        sa.Column("receipt_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("changed_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_receipt_changes_unit", "receipt_changes", ["unit", "txid", "seq"])
    op.create_index("ix_receipt_changes_position", "receipt_changes", ["txid", "seq"])
    op.create_table(
        "webhooks",
        sa.Column("unit", sa.String(9), primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", Sequence64, primary_key=True, autoincrement=True),
        sa.Column("unit", sa.String(9), nullable=False),
        sa.Column("receipt_id", sa.String(36), nullable=False),
        sa.Column("change_seq", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("last_error", sa.String(500)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("delivered_at", UTCDateTime),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_table(
        "feed_positions",
        sa.Column("reader", sa.String(100), primary_key=True),
        sa.Column("txid", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("feed_positions", "webhook_deliveries", "webhooks", "receipt_changes"):
        op.drop_table(table)
    with op.batch_alter_table("receipts") as receipts:
        receipts.drop_column("sequence")
