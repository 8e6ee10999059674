"""Alembic environment: migrations run on a connection handed in by :mod:`statestore.migrate`."""

from alembic import context

from statestore.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `intake migrate` (statestore.migrate.upgrade)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
