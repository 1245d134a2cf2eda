"""The record of people erased (leadflow.people.erasures).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("by", sa.String(320), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("counts", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("erasures_pseudonym", "erasures", ["pseudonym"])


def downgrade() -> None:
    op.drop_table("erasures")
