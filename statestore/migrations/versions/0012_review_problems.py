"""Triage by problem: each review finding's field, offending value and problem id (filled in for
the items indexed before), and the access log's count of items a filter matched.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from statestore.review.problems import finding_problem

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table("review_findings") as batch:
        batch.add_column(sa.Column("field", sa.String(200), nullable=True))
        batch.add_column(sa.Column("value", sa.String(200), nullable=True))
        batch.add_column(sa.Column("problem", sa.String(16), nullable=True))
    op.create_index("ix_review_findings_problem", "review_findings", ["problem", "item_id"])
    with op.batch_alter_table("review_access_log") as batch:
        batch.add_column(sa.Column("total_count", sa.Integer, nullable=True))
    _fill_in(op.get_bind())


def _fill_in(conn: sa.Connection) -> None:
    """The problem of every error finding of the items already indexed, in key order."""
    items = sa.table(
        "review_items",
        sa.column("item_id"),
        sa.column("path"),
        sa.column("message_type"),
        sa.column("version"),
        sa.column("vendor"),
        sa.column("software"),
        sa.column("software_version"),
        sa.column("item_json", sa.JSON),
        sa.column("block_json", sa.JSON),
        sa.column("findings", sa.JSON),
    )
    findings = sa.table(
        "review_findings",
        sa.column("item_id"),
        sa.column("position"),
        sa.column("field"),
        sa.column("value"),
        sa.column("problem"),
    )
    after = ""
    while True:
        rows = conn.execute(
            sa.select(items).where(items.c.item_id > after).order_by(items.c.item_id).limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            for position, finding in enumerate(row.findings or []):
                found = finding_problem(
                    finding,
                    item_path=row.path,
                    item=row.item_json,
                    block=row.block_json,
                    message_type=row.message_type,
                    version=row.version,
                    vendor=row.vendor,
                    software=row.software,
                    software_version=row.software_version,
                )
                conn.execute(
                    sa.update(findings)
                    .where(findings.c.item_id == row.item_id, findings.c.position == position)
                    .values(field=found.field, value=found.value, problem=found.problem)
                )
        after = rows[-1].item_id


def downgrade() -> None:
    with op.batch_alter_table("review_access_log") as batch:
        batch.drop_column("total_count")
    op.drop_index("ix_review_findings_problem", "review_findings")
    with op.batch_alter_table("review_findings") as batch:
        batch.drop_column("problem")
        batch.drop_column("value")
        batch.drop_column("field")
