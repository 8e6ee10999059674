"""Reporting obligations: which units must report which message types from when.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

from statestore.tables import Sequence64, UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reporting_obligations",
        sa.Column("id", Sequence64, primary_key=True, autoincrement=True),
        sa.Column("unit", sa.String(9), nullable=False),
        sa.Column("kommune_nr", sa.String(4)),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("ended_by", sa.String(200)),
    )
    op.create_index(
        "ix_reporting_obligations_type", "reporting_obligations", ["message_type", "valid_from"]
    )


def downgrade() -> None:
    op.drop_index("ix_reporting_obligations_type", "reporting_obligations")
    op.drop_table("reporting_obligations")
