"""The event archive: every event a lead evaluated (archive.events).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("lead", sa.String(200), primary_key=True),
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("taken_at", sa.Float, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("events_taken", "events", ["taken_at", "lead", "seq"])
    op.create_index("events_at", "events", ["at"])


def downgrade() -> None:
    op.drop_index("events_at", "events")
    op.drop_index("events_taken", "events")
    op.drop_table("events")
