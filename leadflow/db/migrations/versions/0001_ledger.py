"""The delivery ledger: deliveries and suppressions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("lead", sa.String(200), nullable=False),
        sa.Column("target", sa.String(1024), nullable=False, server_default=""),
        sa.Column("subject", sa.String(512), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reclaims", sa.Integer, nullable=False, server_default="0"),
        sa.Column("message_id", sa.String(512), nullable=False, server_default=""),
        sa.Column("claimed_by", sa.String(256), nullable=False, server_default=""),
        sa.Column("lease_until", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float, nullable=True),
    )
    op.create_index("deliveries_lead", "deliveries", ["lead"])
    op.create_index("deliveries_status_updated", "deliveries", ["status", "updated_at"])
    op.create_index("deliveries_updated", "deliveries", ["updated_at"])
    op.create_table(
        "suppressions",
        sa.Column("address_hash", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("lead", sa.String(200), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index("deliveries_updated", "deliveries")
    op.drop_index("deliveries_status_updated", "deliveries")
    op.drop_index("deliveries_lead", "deliveries")
    op.drop_table("deliveries")
