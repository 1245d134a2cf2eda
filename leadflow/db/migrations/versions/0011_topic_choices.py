"""The topics of marketing e-mail a person dropped on the preference page.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "topic_choices",
        sa.Column("address_hash", sa.String(64), primary_key=True),
        sa.Column("topic", sa.String(40), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("topic_choices")
