"""The shared database's tables (SQLAlchemy Core): the delivery ledger's and the event
archive's. Alembic migrations under delivery/migrations/versions create and change them; this
module is what the code reads and writes, and what `alembic revision --autogenerate` compares a
database against."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text, text

metadata = MetaData()

# One row per message leadflow sends or tells: an e-mail, a hand-off or an escalation webhook.
deliveries = Table(
    "deliveries", metadata,
    Column("key", String(512), primary_key=True),  # the delivery key: stable across retries
    Column("kind", String(32), nullable=False),  # email | handoff | escalation
    Column("lead", String(200), nullable=False),
    Column("target", String(1024), nullable=False, server_default=""),  # address or URL
    Column("subject", String(512), nullable=False, server_default=""),  # content id, task id
    # sending (claimed, in flight) | sent | retrying | failed | bounced | suppressed | skipped
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=False, server_default=""),  # why: the last error, the reason
    Column("attempts", Integer, nullable=False, server_default="0"),
    # claims taken over from an attempt whose lease ran out: the one window where a receiver may
    # see a message twice (the attempt may have sent before it died)
    Column("reclaims", Integer, nullable=False, server_default="0"),
    Column("message_id", String(512), nullable=False, server_default=""),  # Message-ID / Idempotency-Key
    Column("claimed_by", String(256), nullable=False, server_default=""),
    Column("lease_until", Float, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("sent_at", Float, nullable=True),
)
Index("deliveries_lead", deliveries.c.lead)
# only the statuses ops look for: every delivery passes through sending and sent (migration 0002)
ATTENTION = text("status NOT IN ('sending', 'sent')")
Index("deliveries_attention", deliveries.c.status, deliveries.c.updated_at,
      sqlite_where=ATTENTION, postgresql_where=ATTENTION)
Index("deliveries_updated", deliveries.c.updated_at)

# Addresses that get no marketing e-mail, whatever any policy says: unsubscribed or bounced.
# Kept as SHA-256 of the trimmed, lower-cased address: the list needs no address in clear.
suppressions = Table(
    "suppressions", metadata,
    Column("address_hash", String(64), primary_key=True),
    Column("reason", String(32), nullable=False),  # unsubscribed | bounced
    Column("lead", String(200), nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),
    Column("at", Float, nullable=False),
)

# Every event a lead evaluated (archive.events): the log that simulation replays. `at` is when
# the event counted (its own time, else when the lead took it); `taken_at` and `seq` give the
# order the lead took them in.
events = Table(
    "events", metadata,
    Column("lead", String(200), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("taken_at", Float, nullable=False),
    Column("seq", Integer, nullable=False, server_default="0"),
    Column("body", Text, nullable=False),  # the event as JSON
)
Index("events_taken", events.c.taken_at, events.c.lead, events.c.seq)
Index("events_at", events.c.at)
