"""The sales roster, task assignments and round-robin credits (routing).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roster_reps",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.Column("name", sa.String(320), nullable=False, server_default=""),
        sa.Column("email", sa.String(320), nullable=False, server_default=""),
        sa.Column("queues", sa.Text, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("away_from", sa.Float, nullable=True),
        sa.Column("away_until", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(320), nullable=False, server_default=""),
    )
    op.create_table("roster_meta", sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    op.create_table(
        "task_assignments",
        sa.Column("task", sa.String(300), primary_key=True),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("rep", sa.String(200), nullable=True),
        sa.Column("lead", sa.String(200), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("assigned_at", sa.Float, nullable=True),
        sa.Column("closed_at", sa.Float, nullable=True),
    )
    op.create_index("task_assignments_open", "task_assignments", ["status", "queue"])
    op.create_table(
        "route_credits",
        sa.Column("queue", sa.String(200), primary_key=True),
        sa.Column("rep", sa.String(200), primary_key=True),
        sa.Column("credit", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("route_credits")
    op.drop_index("task_assignments_open", "task_assignments")
    op.drop_table("task_assignments")
    op.drop_table("roster_meta")
    op.drop_table("roster_reps")
