"""The identity vault: each pseudonym's sealed person identifier, apart from the content
(identity/, docs/privacy.md).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from statestore.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_vault",
        sa.Column("pseudonym", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
    )
    op.create_index("identity_vault_key_id", "identity_vault", ["key_id"])


def downgrade() -> None:
    op.drop_index("identity_vault_key_id", "identity_vault")
    op.drop_table("identity_vault")
