"""Object versions over valid time, integrity findings, context on objects.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from statestore.tables import Json, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("objects") as objects:
        objects.add_column(sa.Column("context", Json))
        objects.add_column(sa.Column("clinical_time", sa.String(40)))
    op.create_table(
        "object_versions",
        sa.Column("unit", sa.String(9), nullable=False),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("valid_from", UTCDateTime, nullable=False),
        sa.Column("valid_to", UTCDateTime),
        sa.Column("state", Json),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("context", Json),
        sa.Column("clinical_time", sa.String(40)),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("unit", "message_type", "object_id", "valid_from"),
    )
    op.create_index(
        "ix_object_versions_time", "object_versions", ["message_type", "valid_from", "valid_to"]
    )
    op.create_table(
        "integrity_findings",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("rule_id", sa.String(20), nullable=False),
        sa.Column("unit", sa.String(9), nullable=False),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("params", Json, nullable=False),
        sa.PrimaryKeyConstraint("event_id", "rule_id"),
    )
    op.create_index(
        "ix_integrity_object", "integrity_findings", ["unit", "message_type", "object_id"]
    )


def downgrade() -> None:
    op.drop_table("integrity_findings")
    op.drop_table("object_versions")
    with op.batch_alter_table("objects") as objects:
        objects.drop_column("clinical_time")
        objects.drop_column("context")
