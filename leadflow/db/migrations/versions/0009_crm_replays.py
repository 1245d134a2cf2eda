"""CRM replays: the signed answers the API has taken, refused if sent again (leadflow.crm_auth).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_replays",
        sa.Column("t", sa.Integer, primary_key=True),
        sa.Column("mac", sa.String(64), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("crm_replays")
