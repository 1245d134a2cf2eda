"""The tracking script's visitors and their anonymous page views (leadflow.tracking).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "visitors",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("first_at", sa.Float, nullable=False),
        sa.Column("last_at", sa.Float, nullable=False),
        sa.Column("views", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lead", sa.String(200), nullable=True),
        sa.Column("ref", sa.Text, nullable=True),
    )
    op.create_index("visitors_anonymous_last", "visitors", ["lead", "last_at"])
    op.create_table(
        "visits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("visitor", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("visits_visitor", "visits", ["visitor", "at"])


def downgrade() -> None:
    op.drop_table("visits")
    op.drop_table("visitors")
