"""Deliveries by status: an index of the rows that need a look only.

Every delivery is written as `sending` and marked `sent` a moment later; indexing those two
statuses cost each delivery two index pages more in the hot path, for a lookup nobody makes
(listing sent or in-flight deliveries walks the updated_at index). The partial index keeps
what ops look for (failed, retrying, bounced, suppressed, skipped) and nothing else.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ATTENTION = sa.text("status NOT IN ('sending', 'sent')")


def upgrade() -> None:
    op.drop_index("deliveries_status_updated", "deliveries")
    op.create_index("deliveries_attention", "deliveries", ["status", "updated_at"],
                    sqlite_where=ATTENTION, postgresql_where=ATTENTION)


def downgrade() -> None:
    op.drop_index("deliveries_attention", "deliveries")
    op.create_index("deliveries_status_updated", "deliveries", ["status", "updated_at"])
