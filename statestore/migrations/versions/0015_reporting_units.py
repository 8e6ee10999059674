"""The directory of reporting units (Enhetsregisteret).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from statestore.tables import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reporting_units",
        sa.Column("orgnr", sa.String(9), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("parent_orgnr", sa.String(9)),
        sa.Column("kommune_nr", sa.String(4)),
        sa.Column("industry_code", sa.String(20)),
        sa.Column("industry_text", sa.String(300)),
        sa.Column("organisation_form", sa.String(20)),
        sa.Column("imported_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_reporting_units_kommune", "reporting_units", ["kommune_nr"])


def downgrade() -> None:
    op.drop_index("ix_reporting_units_kommune", "reporting_units")
    op.drop_table("reporting_units")
