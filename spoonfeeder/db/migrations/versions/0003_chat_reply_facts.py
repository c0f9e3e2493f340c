"""chat: estimated token counts, titles renamed by hand

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        # The server reported no usage: tokens_in/out were counted by Spoon Feeder.
        batch_op.add_column(
            sa.Column("tokens_estimated", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("conversations") as batch_op:
        # Renamed by hand: the title stops following the first message.
        batch_op.add_column(
            sa.Column("title_locked", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch_op:
        batch_op.drop_column("title_locked")
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_column("tokens_estimated")
