"""Imported code lists and their member states.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from statestore.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "codelists",
        sa.Column("codelist_id", sa.String(100), primary_key=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("sample", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("imported_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "codelist_states",
        sa.Column("codelist_id", sa.String(100), nullable=False),
        sa.Column("code", sa.String(100), nullable=False),
        sa.Column("effective", sa.Date, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("display", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("codelist_id", "code", "effective"),
        sa.ForeignKeyConstraint(["codelist_id"], ["codelists.codelist_id"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("codelist_states")
    op.drop_table("codelists")
