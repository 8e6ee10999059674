"""Code lists with a correspondence between versions (municipality numbers after a reform).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "codelist_changes",
        sa.Column("codelist_id", sa.String(100), nullable=False),
        sa.Column("old_code", sa.String(100), nullable=False),
        sa.Column("new_code", sa.String(100), nullable=False),
        sa.Column("changed_on", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("codelist_id", "old_code", "new_code", "changed_on"),
        sa.ForeignKeyConstraint(["codelist_id"], ["codelists.codelist_id"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("codelist_changes")
