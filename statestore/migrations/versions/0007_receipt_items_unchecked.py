"""Receipt items without a per-row foreign key check or an index by event id.

A 500-item message writes 500 receipt items in the statement that creates their receipt
(``statestore.receipts._RESERVE``; one transaction on SQLite), so the foreign key could never
fail, yet PostgreSQL ran its check trigger once per row; and no query looks items up by event
id (a receipt's items are read by its id, the primary key's prefix). Both together were about
3 ms of the server's CPU per 500-item message, 60 % of writing the items (bench/RESULTS.md).
Receipts are never deleted; whoever deletes one by hand deletes its items too.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# 0001 left the foreign key unnamed: PostgreSQL named it thus; on SQLite the batch copy gives it
# the name of this convention (and the downgrade puts it back under that name).
_POSTGRES_FK = "receipt_items_receipt_id_fkey"
_SQLITE_NAMING = {"fk": "fk_%(table_name)s_%(referred_table_name)s"}
_SQLITE_FK = "fk_receipt_items_receipts"


def upgrade() -> None:
    op.drop_index("ix_receipt_items_event", table_name="receipt_items")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("receipt_items", naming_convention=_SQLITE_NAMING) as items:
            items.drop_constraint(_SQLITE_FK, type_="foreignkey")
    else:
        op.drop_constraint(_POSTGRES_FK, "receipt_items", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("receipt_items", naming_convention=_SQLITE_NAMING) as items:
            items.create_foreign_key(
                _SQLITE_FK, "receipts", ["receipt_id"], ["receipt_id"], ondelete="CASCADE"
            )
    else:
        op.create_foreign_key(
            _POSTGRES_FK,
            "receipt_items",
            "receipts",
            ["receipt_id"],
            ["receipt_id"],
            ondelete="CASCADE",
        )
    op.create_index("ix_receipt_items_event", "receipt_items", ["event_id"])
