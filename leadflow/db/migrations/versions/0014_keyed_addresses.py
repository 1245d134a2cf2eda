"""The suppression list and the topic choices keep a keyed hash of each address, no longer its
plain SHA-256 (which anyone holding the database could match against a list of addresses):
each kept digest becomes HMAC(key, digest), the key derived from LEADFLOW_SECRET
(leadflow.db.database.Database.pseudonym). Signed links still carry the plain digest, so a link
sent before this migration still unsubscribes.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import sqlalchemy as sa
from alembic import context, op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    key_of: Callable[[], str] | None = context.config.attributes.get("pseudonym_key")
    conn = op.get_bind()
    for table in ("suppressions", "topic_choices"):
        digests = conn.execute(sa.text(f"SELECT DISTINCT address_hash FROM {table}")).scalars().all()
        if digests and key_of is None:
            raise RuntimeError("migration 0014 keys the addresses the database keeps: run it through "
                               "leadflow (Database.migrate), which passes the key")
        for digest in digests:
            assert key_of is not None
            keyed = hmac.new(str(key_of()).encode(), digest.encode(), hashlib.sha256).hexdigest()
            conn.execute(sa.text(f"UPDATE {table} SET address_hash = :keyed WHERE address_hash = :digest"),
                         {"keyed": keyed, "digest": digest})


def downgrade() -> None:
    raise NotImplementedError("a keyed hash cannot be turned back into the address's digest")
