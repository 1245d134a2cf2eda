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
Index("deliveries_message_id", deliveries.c.message_id)  # a returned report names its message (0012)

# Addresses that get no marketing e-mail, whatever any policy says: unsubscribed or bounced.
# Kept as a keyed hash of the trimmed, lower-cased address (Database.pseudonym: HMAC of its SHA-256,
# the key from LEADFLOW_SECRET): the list needs no address, and nobody without the key can match it.
suppressions = Table(
    "suppressions", metadata,
    Column("address_hash", String(64), primary_key=True),
    Column("reason", String(32), nullable=False),  # unsubscribed | bounced | complaint
    Column("lead", String(200), nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),
    Column("at", Float, nullable=False),
)

# Bounces and complaints that came back after the message left (leadflow.delivery.inbound): a
# delivery status notification (hard or soft, with its status code) or an abuse report, one row
# per delivery and kind, so a report sent twice counts once (migration 0012).
mail_reports = Table(
    "mail_reports", metadata,
    Column("key", String(512), primary_key=True),  # the delivery's key
    Column("kind", String(16), primary_key=True),  # hard | soft | complaint
    Column("lead", String(200), nullable=False, server_default=""),
    Column("status", String(16), nullable=False, server_default=""),  # an RFC 3463 code, e.g. 5.1.1
    Column("detail", Text, nullable=False, server_default=""),
    Column("at", Float, nullable=False),
)
Index("mail_reports_at", mail_reports.c.at)

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

# Policy versions as proposed (governance.registry): the text by its content hash, so every
# worker on every machine compiles the very same version; (name, version) names one text only.
policy_versions = Table(
    "policy_versions", metadata,
    Column("sha", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("file", String(512), nullable=False, server_default=""),  # where it was proposed from
    Column("text", Text, nullable=False),
    Column("proposed_by", String(320), nullable=False, server_default=""),
    Column("proposed_at", Float, nullable=False),
)
Index("policy_versions_name", policy_versions.c.name, policy_versions.c.version, unique=True)

# Who proposed, approved, activated or shadowed which version, when: `leadflow policy log`.
policy_log = Table(
    "policy_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha", String(64), nullable=False),
    # proposed | approved | activated | shadowed | shadow-stopped
    Column("action", String(32), nullable=False),
    Column("who", String(320), nullable=False, server_default=""),
    Column("team", String(32), nullable=False, server_default=""),  # an approval's: marketing | sales
    Column("detail", Text, nullable=False, server_default=""),
)
Index("policy_log_name", policy_log.c.name, policy_log.c.id)

# What decides, per policy name: the active version (and how running leads take it), and the
# version running in shadow beside it, if any.
policy_state = Table(
    "policy_state", metadata,
    Column("name", String(200), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("sha", String(64), nullable=False),
    Column("rollout", String(8), nullable=False),  # move | pin
    Column("activated_at", Float, nullable=False),
    Column("shadow_version", Integer, nullable=True),
    Column("shadow_sha", String(64), nullable=True),
)

# Every state change a live lead made (the Decision's story lines that moved it): the funnel.
# How each run of a lead ended (workflows.types.LeadEnding): its next run reads it.
endings = Table(
    "lead_endings", metadata,
    Column("lead", String(200), primary_key=True),
    Column("run_id", String(200), primary_key=True),
    Column("state", String(64), nullable=False),
    Column("since", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Column("body", Text, nullable=False),  # the LeadEnding as JSON
)

transitions = Table(
    "transitions", metadata,
    Column("lead", String(200), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("from_state", String(64), nullable=False),
    Column("to_state", String(64), nullable=False),
    Column("rule", String(200), nullable=False, server_default=""),
    Column("policy", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("why", Text, nullable=False, server_default=""),
)
Index("transitions_at", transitions.c.at)

# A shadow version's Decisions beside the live ones, per event; never acted on.
shadow_decisions = Table(
    "shadow_decisions", metadata,
    Column("sha", String(64), primary_key=True),  # the shadow version's content hash
    Column("lead", String(200), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("at", Float, nullable=False),
    Column("taken_at", Float, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("live", Text, nullable=False),  # JSON: the live Decision in short
    Column("shadow", Text, nullable=False),  # JSON: the shadow's, in the same shape
)
Index("shadow_decisions_order", shadow_decisions.c.sha, shadow_decisions.c.taken_at)

# The lead as the shadow version sees it: where its next event starts from.
shadow_leads = Table(
    "shadow_leads", metadata,
    Column("sha", String(64), primary_key=True),
    Column("lead", String(200), primary_key=True),
    Column("state", Text, nullable=False),  # LeadState as JSON
    Column("updated_at", Float, nullable=False),
)

# The sales roster (routing.roster): reps, their queues, capacity and time away. Sales change it
# through the API and pages, or by editing the roster file (imported when its content changes).
roster_reps = Table(
    "roster_reps", metadata,
    Column("id", String(200), primary_key=True),
    Column("position", Integer, nullable=False, server_default="0"),  # the file's order
    Column("name", String(320), nullable=False, server_default=""),
    Column("email", String(320), nullable=False, server_default=""),
    Column("queues", Text, nullable=False),  # JSON list of queue names
    Column("capacity", Integer, nullable=False),  # open tasks at once; also the rep's share
    Column("away_from", Float, nullable=True),
    Column("away_until", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(320), nullable=False, server_default=""),
)
roster_meta = Table(
    "roster_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Which rep holds each hand-off task (none while it waits in its queue), and each rep's credit in
# the weighted round robin of a queue (routing.pick).
task_assignments = Table(
    "task_assignments", metadata,
    Column("task", String(300), primary_key=True),
    Column("queue", String(200), nullable=False),
    Column("rep", String(200), nullable=True),
    Column("lead", String(200), nullable=False, server_default=""),
    Column("status", String(16), nullable=False),  # open | waiting | closed
    Column("created_at", Float, nullable=False),
    Column("assigned_at", Float, nullable=True),
    Column("closed_at", Float, nullable=True),
)
Index("task_assignments_open", task_assignments.c.status, task_assignments.c.queue)
route_credits = Table(
    "route_credits", metadata,
    Column("queue", String(200), primary_key=True),
    Column("rep", String(200), primary_key=True),
    Column("credit", Float, nullable=False),
)

# Ids that name the same person as another lead (identity.aliases): events sent to the alias go
# to the lead it names, the lead that survived a merge.
lead_aliases = Table(
    "lead_aliases", metadata,
    Column("alias", String(200), primary_key=True),  # a lead id (rules.identity.lead_key)
    Column("lead", String(200), nullable=False),  # the lead it now is
    Column("at", Float, nullable=False),
    Column("event_id", String(200), nullable=False, server_default=""),  # the identify event
)
Index("lead_aliases_lead", lead_aliases.c.lead)

# Opens and clicks counted per window (leadflow.api.links): a link token's per hour, a client
# address's per minute, and one row per fetch already seen, so every API process keeps to the
# same bounds. Rows whose window is over go (Database.count_link_hit sweeps them now and then).
link_hits = Table(
    "link_hits", metadata,
    Column("bucket", String(128), primary_key=True),  # "seen:…" | "token:…" | "addr:…", hashed
    Column("hits", Integer, nullable=False, server_default="0"),
    Column("expires_at", Float, nullable=False),
)
Index("link_hits_expires", link_hits.c.expires_at)

# CRM answers already taken: (t, mac) of each signed answer, kept while it would still verify,
# so a captured answer is refused by every API process (leadflow.crm_auth; migration 0009).
crm_replays = Table(
    "crm_replays", metadata,
    Column("t", Integer, primary_key=True),
    Column("mac", String(64), primary_key=True),
    Column("at", Float, nullable=False),
)

# The tracking script's visitors (leadflow.tracking): a first-party id per browser, what it did
# while nobody knew who it was, and, once a form, an e-mail click or identify() names it, the
# lead it is. Anonymous visitors go after LEADFLOW_ANONYMOUS_RETENTION (migration 0010).
visitors = Table(
    "visitors", metadata,
    Column("id", String(64), primary_key=True),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("views", Integer, nullable=False, server_default="0"),  # stored while anonymous
    Column("lead", String(200), nullable=True),  # rules.identity.lead_key, once known
    Column("ref", Text, nullable=True),  # the lead's {"email"} or {"external_id"}, JSON
)
Index("visitors_anonymous_last", visitors.c.lead, visitors.c.last_at)

visits = Table(
    "visits", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("visitor", String(64), nullable=False),
    Column("at", Float, nullable=False),  # when the page was seen, by the browser's clock
    Column("body", Text, nullable=False),  # the page view's data, JSON
)
Index("visits_visitor", visits.c.visitor, visits.c.at)

# The topics of marketing e-mail a person dropped on the preference page (leadflow.delivery.
# preferences), by the address's keyed hash as the suppression list keeps it: content of a dropped
# topic is not sent to that address (migration 0011).
topic_choices = Table(
    "topic_choices", metadata,
    Column("address_hash", String(64), primary_key=True),
    Column("topic", String(40), primary_key=True),
    Column("at", Float, nullable=False),
)

# What the key of a use (the addresses) gives for a fixed text: which LEADFLOW_SECRET the rows were
# keyed with, without the key (leadflow.db.database.Database.of; migration 0015).
key_checks = Table(
    "key_checks", metadata,
    Column("purpose", String(40), primary_key=True),
    Column("digest", String(64), nullable=False),
)

# People erased (leadflow.people.erase): when, by whom, and a keyed pseudonym of the lead, never
# an address or a lead id (an id is a plain hash of the address). What was removed, counted.
erasures = Table(
    "erasures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("by", String(320), nullable=False),
    Column("pseudonym", String(64), nullable=False),
    Column("counts", Text, nullable=False, server_default="{}"),  # JSON: what went, per place
)
Index("erasures_pseudonym", erasures.c.pseudonym)
