"""PostgreSQL: a GiST index over each version's valid-time interval, so that "which versions
were valid at instant T" reads only those versions however long the history grows.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_object_versions_during ON object_versions "
            "USING gist (tstzrange(valid_from, valid_to, '(]'))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_object_versions_during", table_name="object_versions")
