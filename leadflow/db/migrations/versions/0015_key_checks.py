"""A check value of the key the database's addresses are kept under (leadflow.db.database.
Database.of): a process given another LEADFLOW_SECRET is refused at start, rather than checking
suppressions that never match and keying new ones that nobody else can.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_checks",
        sa.Column("purpose", sa.String(40), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_checks")
