"""tasks: a partial index in the claim's order over queued rows

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    # The claim orders queued tasks by priority DESC, run_at, created_at; with this
    # index that is one index entry per claim instead of a sort of the whole queue.
    op.create_index(
        "ix_tasks_queued",
        "tasks",
        [sa.text("priority DESC"), "run_at", "created_at"],
        postgresql_where=QUEUED,
        sqlite_where=QUEUED,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_queued", table_name="tasks")
