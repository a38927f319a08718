"""runs.rerun_of, runs.rerun_report: a re-run's record names the record it re-ran and keeps
the comparison with it (``hub/runs/rerun.py``)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rerun_of", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("rerun_report", sa.JSON(), nullable=True))
        batch_op.create_index("ix_runs_rerun_of", ["rerun_of"])


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_rerun_of")
        batch_op.drop_column("rerun_report")
        batch_op.drop_column("rerun_of")
