"""Alembic environment: the hub passes an open connection in ``config.attributes``."""

from alembic import context

from rsparkhub.hub.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via Database.upgrade
    raise RuntimeError("run migrations through `rsparkhub db upgrade`")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
