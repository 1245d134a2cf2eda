"""Link hits: how many opens and clicks a link token, and a client address, counted in their
window (leadflow.api.links bounds them across every API process).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "link_hits",
        # "seen:…", "token:…" or "addr:…" with its window's number: one row per window
        sa.Column("bucket", sa.String(128), primary_key=True),
        sa.Column("hits", sa.Integer, nullable=False, server_default="0"),
        sa.Column("expires_at", sa.Float, nullable=False),  # when the window's row may go
    )
    op.create_index("link_hits_expires", "link_hits", ["expires_at"])


def downgrade() -> None:
    op.drop_index("link_hits_expires", "link_hits")
    op.drop_table("link_hits")
