"""Lead aliases: ids merged into another lead (an `identify` event).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lead_aliases",
        sa.Column("alias", sa.String(200), primary_key=True),
        sa.Column("lead", sa.String(200), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False, server_default=""),
    )
    op.create_index("lead_aliases_lead", "lead_aliases", ["lead"])


def downgrade() -> None:
    op.drop_index("lead_aliases_lead", "lead_aliases")
    op.drop_table("lead_aliases")
