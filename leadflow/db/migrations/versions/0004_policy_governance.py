"""Policy governance, the funnel and shadow runs: proposed texts, their log, what is active,
live transitions, and shadow Decisions.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("sha", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("file", sa.String(512), nullable=False, server_default=""),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("proposed_by", sa.String(320), nullable=False, server_default=""),
        sa.Column("proposed_at", sa.Float, nullable=False),
    )
    op.create_index("policy_versions_name", "policy_versions", ["name", "version"], unique=True)
    op.create_table(
        "policy_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("who", sa.String(320), nullable=False, server_default=""),
        sa.Column("team", sa.String(32), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("policy_log_name", "policy_log", ["name", "id"])
    op.create_table(
        "policy_state",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("rollout", sa.String(8), nullable=False),
        sa.Column("activated_at", sa.Float, nullable=False),
        sa.Column("shadow_version", sa.Integer, nullable=True),
        sa.Column("shadow_sha", sa.String(64), nullable=True),
    )
    op.create_table(
        "transitions",
        sa.Column("lead", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("from_state", sa.String(64), nullable=False),
        sa.Column("to_state", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False, server_default=""),
        sa.Column("policy", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("why", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("transitions_at", "transitions", ["at"])
    op.create_table(
        "shadow_decisions",
        sa.Column("sha", sa.String(64), primary_key=True),
        sa.Column("lead", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("taken_at", sa.Float, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("live", sa.Text, nullable=False),
        sa.Column("shadow", sa.Text, nullable=False),
    )
    op.create_index("shadow_decisions_order", "shadow_decisions", ["sha", "taken_at"])
    op.create_table(
        "shadow_leads",
        sa.Column("sha", sa.String(64), primary_key=True),
        sa.Column("lead", sa.String(200), primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("shadow_leads", "shadow_decisions", "transitions", "policy_state", "policy_log",
                  "policy_versions"):
        op.drop_table(table)
