"""Erase a person: everything leadflow keeps of them goes, but the promise not to mail them again.

In this order, so nothing written after a step brings back what it removed:
1. Temporal: every run of their leads (the one an id names, every id merged into it) and of
   their hand-off tasks is terminated and deleted (leadflow.people.runs). No workflow of theirs
   is left to evaluate an event, archive it or start a delivery.
2. Deliveries still in flight (a claim whose lease has not run out) are waited for: an attempt
   that was sending when its workflow went marks its row when it ends.
3. The shared database, in one transaction: their archived events, funnel transitions, shadow
   decisions and shadow leads, endings, aliases, task assignments and stitched visitors with
   their views are deleted; their delivery rows stay for counts, under a pseudonym, with the
   address, subject of a webhook (a task id names the lead), the SMTP reply and message id
   emptied; a suppression of their address stays as its keyed hash alone (its lead and reply
   emptied; Database.pseudonym). Once more a moment later, for a terminated run's last write.
4. The intake's seen table (its own SQLite file) forgets their event ids, its deleted rows
   zeroed in place.
5. The mail sink (`make up`'s, under LEADFLOW_HOME/mail) loses every message to or about them.
6. A record of the erasure is kept: when, by whom, a keyed pseudonym, and what went.
7. What the deletes left behind goes: SQLite's log is checkpointed and truncated (deleted rows
   are zeroed in place, the engine's `secure_delete` pragma); on PostgreSQL every table that may
   hold a person is written anew and the server's log switched and checkpointed. Last, because a
   failure here (a lock not had, the server away) is logged and leaves the erasure done.

An event that names them afterwards starts a new lead that knows nothing of the old one; the
suppression, kept by the address's keyed hash, still stops marketing mail to it."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import hmac
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from temporalio.client import Client

from leadflow.db.database import Database, address_hash
from leadflow.db.schema import (
    deliveries,
    endings,
    events,
    lead_aliases,
    mail_reports,
    shadow_decisions,
    shadow_leads,
    suppressions,
    task_assignments,
    transitions,
    visitors,
    visits,
)
from leadflow.people import erasures, runs
from leadflow.people.person import Person, find
from leadflow.seen import FILE_NAME as SEEN_FILE
from leadflow.settings import Settings

log = logging.getLogger("leadflow.people")

LATE_WRITES = 1.0  # seconds for a terminated run's last archive write to land
IN_FLIGHT_WAIT = 90.0  # seconds at most for a delivery attempt that was sending (its lease)
# the tables that may hold a person (an erasure's own record does not)
HOLDING = ("events", "transitions", "shadow_decisions", "shadow_leads", "lead_endings", "mail_reports",
           "lead_aliases", "task_assignments", "visits", "visitors", "deliveries", "suppressions",
           "topic_choices")
LOCK_WAIT = "5s"  # PostgreSQL: how long a table's rewrite waits for its lock before it tries again
LOCK_TRIES = 6  # then it is left (and logged): a long transaction must not hold up every writer


async def erase(client: Client, settings: Settings, ledger: Database, who: str, by: str) -> dict[str, Any]:
    """Erase the person `who` names (e-mail, external id or lead id); the erasure's record.
    Raises leadflow.people.person.NoSuchPerson when leadflow holds nothing of them."""
    person = await find(client, ledger, who)
    counts: dict[str, int] = {"leads": len(person.leads)}
    tasks = await runs.task_ids(client, ledger, person.leads)
    counts["runs"] = await runs.delete(client, person.leads)
    # a task opened while its lead was still running, found once the lead is gone
    tasks += [t for t in await runs.task_ids(client, ledger, person.leads) if t not in tasks]
    counts["runs"] += await runs.delete(client, tasks)
    counts["tasks"] = len(tasks)
    await asyncio.to_thread(_settled, ledger, person.leads)
    key = settings.key_for(erasures.KEY_USE)
    name = erasures.pseudonym(key, person.lead)
    counts.update(await asyncio.to_thread(_database, ledger, person, tasks, key, name))
    # an evaluation that was running when its workflow went may still hand its batch to the
    # archive's writer: a moment later, whatever it wrote goes too
    await asyncio.sleep(LATE_WRITES)
    for place, n in (await asyncio.to_thread(_database, ledger, person, tasks, key, name)).items():
        counts[place] += n
    counts["seen"] = await asyncio.to_thread(forget_seen, settings.home / SEEN_FILE, person.leads)
    counts["mail"] = await asyncio.to_thread(forget_mail, settings.mail_dir, person.addresses)
    done = await asyncio.to_thread(erasures.record, ledger, by, name, counts)
    # last, and never failing the erasure (what it removed stays removed, the record is kept):
    # every table that may hold them, those where nothing was found now too, since an earlier
    # update or delete (a stitched visitor's views, a delivery's earlier status) left its row's
    # old version
    await asyncio.to_thread(_compact, ledger, list(HOLDING))
    log.info("person erased (pseudonym %s) by %s: %s", name, by, counts)
    return done


def _settled(ledger: Database, leads: list[str], wait: float = IN_FLIGHT_WAIT) -> None:
    """Until no delivery of these leads is being sent under a live claim."""
    d = deliveries.c
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with ledger.engine.connect() as db:
            busy = db.execute(select(d.key).where(d.lead.in_(leads), d.status == "sending",
                                                  d.lease_until > time.time()).limit(1)).first()
        if busy is None:
            return
        time.sleep(0.5)
    log.warning("erasing a person while a delivery of theirs is still claimed after %.0f s", wait)


def _database(ledger: Database, person: Person, tasks: list[str], key: str, name: str) -> dict[str, int]:
    leads = person.leads
    hashes = [h for a in sorted(person.addresses) for h in ledger.pseudonyms(address_hash(a))]
    counts: dict[str, int] = {}
    with ledger.writing() as db:
        for label, table in (("events", events), ("transitions", transitions),
                             ("shadow_decisions", shadow_decisions), ("shadow_leads", shadow_leads),
                             ("endings", endings), ("mail_reports", mail_reports)):
            counts[label] = db.execute(delete(table).where(table.c.lead.in_(leads))).rowcount or 0
        a = lead_aliases.c
        counts["aliases"] = db.execute(delete(lead_aliases).where(
            or_(a.alias.in_(leads), a.lead.in_(leads)))).rowcount or 0
        t = task_assignments.c
        db.execute(delete(task_assignments).where(or_(t.lead.in_(leads), t.task.in_(tasks or [""]))))
        v = visitors.c
        theirs = db.execute(select(v.id).where(v.lead.in_(leads))).scalars().all()
        counts["visits"] = db.execute(delete(visits).where(visits.c.visitor.in_(theirs))).rowcount or 0
        counts["visitors"] = db.execute(delete(visitors).where(v.id.in_(theirs))).rowcount or 0
        d = deliveries.c
        rows = db.execute(select(d.key, d.kind, d.subject).where(d.lead.in_(leads))).all()
        for row in rows:
            # the key names the lead's track and event (ids may quote the address): kept unique
            # for the counts, not readable
            db.execute(update(deliveries).where(d.key == row.key).values(
                key="erased-" + hmac.new(key.encode(), row.key.encode(), hashlib.sha256).hexdigest()[:40],
                lead=name, target="", subject=row.subject if row.kind == "email" else "", detail="",
                message_id="", claimed_by=""))
        counts["deliveries"] = len(rows)
        s = suppressions.c
        kept = or_(s.address_hash.in_(hashes or [""]), s.lead.in_(leads))
        counts["suppressions"] = db.execute(update(suppressions).where(kept).values(lead="", detail="")
                                            ).rowcount or 0
    return counts


def _compact(ledger: Database, touched: list[str]) -> None:
    """What the deletes left behind: SQLite zeroes deleted rows in place (secure_delete, set on
    every connection: leadflow.db.database) but keeps the pages' earlier versions in its log
    until a checkpoint; PostgreSQL keeps dead rows until a vacuum, and what it logged of them (the
    rows, a page's image) in its write-ahead log until a checkpoint lets the segment go."""
    if ledger.engine.dialect.name == "sqlite":
        with ledger.engine.connect() as db:
            for _ in range(20):  # busy: a reader held an old snapshot; it lets go within moments
                busy = db.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
                if busy is None or not busy[0]:
                    return
                time.sleep(0.25)
        log.warning("the shared database's log was not truncated after an erasure: a reader held it")
        return
    if ledger.engine.dialect.name == "postgresql":
        try:
            _rewrite(ledger, touched)
        except Exception as err:  # noqa: BLE001 - the server away: what was deleted stays deleted
            log.warning("after an erasure, the PostgreSQL tables were not rewritten (%s): the erased "
                        "rows' bytes stay in their files until the tables are vacuumed", err)


def _rewrite(ledger: Database, touched: list[str]) -> None:
    """VACUUM (FULL), not VACUUM: a plain vacuum frees a dead row's space but leaves its bytes in
    the page until something is written over them (measured: the event archive's file still held
    the person's name). FULL writes each table anew without them, and ANALYZE samples it anew
    (the statistics keep sampled values). Each holds its table's lock while it runs; it waits
    for it LOCK_WAIT at a time, so a long transaction elsewhere holds up this table's writers
    that long, not for as long as it lasts (docs/people.md#postgresql)."""
    with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.execute(text(f"SET lock_timeout = '{LOCK_WAIT}'"))
        db.execute(text("SET statement_timeout = 0"))  # a big archive takes what it takes
        for table in touched:
            for attempt in range(LOCK_TRIES):
                try:
                    db.execute(text(f"VACUUM (FULL, ANALYZE) {table}"))
                    break
                except OperationalError as err:  # the lock not had in time: later, a few times
                    if attempt == LOCK_TRIES - 1:
                        log.warning("after an erasure, %s was not rewritten: %s", table,
                                    str(err.orig).strip().splitlines()[0])
                    time.sleep(1.0)
        # the log segments that held the rows closed and past the checkpoint's start: removed
        # with wal_recycle off; recycled (their bytes kept until written over) with it on
        if db.execute(text("SHOW wal_recycle")).scalar() == "on":
            log.warning("PostgreSQL runs with wal_recycle on: the erased rows stay in recycled log "
                        "files until they are written over (docs/people.md#postgresql)")
        for statement in ("SELECT pg_switch_wal()", "CHECKPOINT"):
            try:
                db.execute(text(statement))
            except DBAPIError as err:  # a role without the right: the server's own checkpoint does it
                log.warning("after an erasure, PostgreSQL refused %s (%s): the erased rows' bytes stay "
                            "in its log until its own next checkpoint", statement,
                            str(err.orig).strip().splitlines()[0])


def forget_seen(path: Path, leads: list[str]) -> int:
    """The intake's memory of the leads' event ids (ids may quote the address), in every scope."""
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("PRAGMA secure_delete=ON")
        db.execute("PRAGMA busy_timeout=30000")
        try:
            gone = 0
            for lead in leads:
                gone += db.execute("DELETE FROM seen_in WHERE lead = ?", (lead,)).rowcount
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):
                return 0
            raise
        for _ in range(20):
            if not db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                break
            time.sleep(0.25)
        return gone
    finally:
        db.close()


def forget_mail(directory: Path, addresses: set[str]) -> int:
    """Messages in the mail sink to any of the addresses, or naming one anywhere (headers or a
    decoded part): overwritten, then removed."""
    if not directory.is_dir() or not addresses:
        return 0
    wanted = [a.lower() for a in addresses]
    gone = 0
    for path in sorted(directory.iterdir()):
        if not path.is_file() or not path.name.endswith(".eml"):
            continue
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        if not _names(raw, wanted):
            continue
        with contextlib.suppress(OSError), open(path, "r+b") as f:
            f.write(b"\0" * len(raw))
            f.flush()
        path.unlink(missing_ok=True)
        gone += 1
    return gone


def _names(raw: bytes, addresses: list[str]) -> bool:
    lowered = raw.lower()
    if any(a.encode() in lowered for a in addresses):
        return True
    # quoted-printable or base64 parts, and RFC 2047 headers, hide an address from a byte search
    message = email.message_from_bytes(raw, policy=email.policy.default)
    said = " ".join(str(v) for v in message.values()).lower()
    for part in message.walk():
        if part.get_content_maintype() == "text":
            with contextlib.suppress(LookupError, ValueError):
                said += " " + str(part.get_content()).lower()
    return any(a in said for a in addresses)
