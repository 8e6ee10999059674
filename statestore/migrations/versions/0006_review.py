"""Review of rejected items: the items, their findings, history (notes, workflow) and access log.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from statestore.tables import Json, Sequence64, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("item_id", sa.String(36), primary_key=True),
        sa.Column("receipt_id", sa.String(36), nullable=False),
        sa.Column("item_index", sa.Integer, nullable=False),
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("unit", sa.String(9), nullable=False),
        sa.Column("vendor", sa.String(200)),
        sa.Column("software", sa.String(200)),
        sa.Column("software_version", sa.String(100)),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("object_id", sa.String(200)),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("received_day", sa.String(10), nullable=False),
        sa.Column("item_json", Json, nullable=False),
        sa.Column("block_json", Json, nullable=False),
        sa.Column("findings", Json, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("assignee", sa.String(200)),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("replay_event_id", sa.String(36)),
        sa.Column("replayed_at", UTCDateTime),
    )
    op.create_index("ix_review_items_received", "review_items", ["received_at"])
    op.create_index("ix_review_items_unit", "review_items", ["unit", "received_at"])
    op.create_index("ix_review_items_status", "review_items", ["status", "received_at"])
    op.create_index(
        "ix_review_items_receipt", "review_items", ["receipt_id", "item_index"], unique=True
    )
    op.create_table(
        "review_findings",
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("rule_id", sa.String(20), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("item_id", "position"),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.item_id"], ondelete="CASCADE"),
    )
    op.create_index("ix_review_findings_rule", "review_findings", ["rule_id", "item_id"])
    op.create_table(
        "review_history",
        sa.Column("seq", Sequence64, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("old_value", sa.String(200)),
        sa.Column("new_value", sa.String(200)),
        sa.Column("text", sa.String(4000)),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.item_id"], ondelete="CASCADE"),
    )
    op.create_index("ix_review_history_item", "review_history", ["item_id", "seq"])
    op.create_table(
        "review_access_log",
        sa.Column("seq", Sequence64, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("item_id", sa.String(36)),
        sa.Column("path", sa.String(500)),
        sa.Column("reason", sa.String(500)),
        sa.Column("item_count", sa.Integer),
        sa.Column("correlation_id", sa.String(100)),
    )
    op.create_index("ix_review_access_item", "review_access_log", ["item_id", "seq"])
    op.create_index("ix_review_access_at", "review_access_log", ["at"])


def downgrade() -> None:
    for table in ("review_access_log", "review_history", "review_findings", "review_items"):
        op.drop_table(table)
