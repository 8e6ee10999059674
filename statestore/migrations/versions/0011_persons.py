"""Where each person (pseudonym) is registered, and the log of every person-level read
(docs/privacy.md).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from statestore.tables import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_objects",
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(9), nullable=False),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("clinical_from", sa.String(40)),
        sa.Column("clinical_to", sa.String(40)),
        sa.Column("first_recorded", UTCDateTime, nullable=False),
        sa.Column("last_recorded", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("pseudonym", "unit", "message_type", "object_id"),
    )
    op.create_table(
        "person_reads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200)),
        sa.Column("organisation", sa.String(9), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("message_type", sa.String(64)),
        sa.Column("object_id", sa.String(200)),
        sa.Column("pseudonym", sa.String(64)),
        sa.Column("purpose", sa.String(500)),
    )
    op.create_index("ix_person_reads_pseudonym", "person_reads", ["pseudonym", "at"])
    op.create_index("ix_person_reads_at", "person_reads", ["at"])


def downgrade() -> None:
    op.drop_table("person_reads")
    op.drop_table("person_objects")
