"""Readiness probes: a row per process answering /readyz, written by each probe so that
readiness proves the store takes a write (wiring/readiness.py).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from statestore.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "readiness_probes",
        sa.Column("instance", sa.String(200), primary_key=True),
        sa.Column("probed_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("readiness_probes")
