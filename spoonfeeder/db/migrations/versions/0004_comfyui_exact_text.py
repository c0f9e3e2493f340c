"""comfyui: workflows and snapshots kept as the exact JSON text; input images

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # JSONB sorts keys; ComfyUI writes the prompt it received, in its order, into every
    # PNG. The text columns keep the order. Older rows stay NULL: the code falls back to
    # their JSON, whose order (on PostgreSQL) is already lost.
    with op.batch_alter_table("comfyui_workflows") as batch_op:
        batch_op.add_column(sa.Column("workflow_text", sa.Text(), nullable=True))
    with op.batch_alter_table("comfyui_generations") as batch_op:
        batch_op.add_column(sa.Column("workflow_snapshot_text", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("input_images", JSON, server_default=sa.text("'[]'"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("comfyui_generations") as batch_op:
        batch_op.drop_column("input_images")
        batch_op.drop_column("workflow_snapshot_text")
    with op.batch_alter_table("comfyui_workflows") as batch_op:
        batch_op.drop_column("workflow_text")
