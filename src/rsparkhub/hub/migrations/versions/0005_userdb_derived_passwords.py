"""per-user database passwords derived from the hub's secret, not stored

Revision ID: 0005
Revises: 0004

``user_databases.password`` (the clear password) goes; ``password_generation`` comes. The
password is now HMAC-SHA256(DATA_DIR/hub-secret, role, generation) (hub/userdb.py). Existing
rows get generation 1: the user's next session derives that password and ALTERs the role to
it (the hub re-applies the password at every provisioning), after which the old stored one
no longer works. Until then the old one does; backups of the hub database taken before this
migration still hold it.

The column is blanked before it is dropped, with SQLite's secure_delete on, so the old
passwords do not survive in freed pages of the database file.
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql("PRAGMA secure_delete = ON")
    op.execute("UPDATE user_databases SET password = ''")
    with op.batch_alter_table("user_databases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("password_generation", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.drop_column("password")


def downgrade() -> None:
    # The derived passwords cannot be stored back (the key is not the database's): give every
    # role a new random password, which the older hub applies at the user's next session.
    with op.batch_alter_table("user_databases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("password", sa.String(length=128), nullable=False, server_default="")
        )
        batch_op.drop_column("password_generation")
    bind = op.get_bind()
    table = sa.table("user_databases", sa.column("user_id"), sa.column("password"))
    for (user_id,) in bind.execute(sa.select(table.c.user_id)).all():
        bind.execute(
            table.update()
            .where(table.c.user_id == user_id)
            .values(password=secrets.token_urlsafe(24))
        )
