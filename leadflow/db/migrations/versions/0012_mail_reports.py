"""Mail reports: bounces and complaints that come back after a message left (RFC 3464 delivery
status notifications, RFC 5965 abuse reports; leadflow.delivery.inbound), one row per delivery
and kind; and an index on deliveries.message_id, by which a report finds its delivery.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_reports",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("lead", sa.String(200), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("mail_reports_at", "mail_reports", ["at"])
    op.create_index("deliveries_message_id", "deliveries", ["message_id"])


def downgrade() -> None:
    op.drop_index("deliveries_message_id", table_name="deliveries")
    op.drop_index("mail_reports_at", table_name="mail_reports")
    op.drop_table("mail_reports")
