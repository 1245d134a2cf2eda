"""`leadflow deliverability`: bounce and complaint rates per day and content, from the ledger and
the reports that came back (leadflow.delivery.inbound), beside the figures mailbox providers hold
bulk senders to (Gmail's: complaints under 0.1 %, never 0.3 % or more)."""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports the database only for the commands that open it
    from leadflow.db.database import Database

DEFAULT_DAYS = 30
WATCH, LIMIT = 0.001, 0.003  # complaint rates: Gmail's aim for bulk senders, and its line
ALL = "ALL"  # a day's row for all content (content ids are lower case: the policy schema's contentId)


def add_commands(sub: Any, as_json: argparse.ArgumentParser) -> None:
    dv = sub.add_parser("deliverability", parents=[as_json],
                        help="e-mail sent, bounced (hard, soft) and complained about, with rates, per day "
                             "and content")
    dv.add_argument("--since", help=f"an ISO date or time, or a duration back from now (7d, 12h); "
                                    f"default {DEFAULT_DAYS}d")


def figures(ledger: Database, since: float) -> list[dict[str, Any]]:
    """Per day (UTC, of sending) and content, newest day first: what went to a mail server (sent,
    or refused there as a hard bounce) and what came of it. Each day begins with its row for all
    content (`content` ALL): providers judge a sender's day, not one template's."""
    from sqlalchemy import func, select

    from leadflow.db.schema import deliveries, mail_reports

    d, r = deliveries.c, mail_reports.c
    when = func.coalesce(d.sent_at, d.updated_at)
    query = (select(d.key, d.subject, d.status, when.label("at"), r.kind)
             .select_from(deliveries.outerjoin(mail_reports, r.key == d.key))
             .where(d.kind == "email", d.status.in_(("sent", "bounced")), when >= since))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    reports: dict[str, set[str]] = defaultdict(set)
    with ledger.engine.connect() as db:
        for key, content, status, at, kind in db.execute(query):
            day = datetime.fromtimestamp(at, timezone.utc).date().isoformat()
            for what in (ALL, content):
                row = rows.setdefault((day, what), {"keys": set(), "hard": set()})
                row["keys"].add(key)
                if status == "bounced":  # refused in the SMTP exchange, or a DSN said so later
                    row["hard"].add(key)
            if kind is not None:
                reports[key].add(kind)
    out = []
    by_content = sorted(rows.items(), key=lambda item: (item[0][1] != ALL, item[0][1]))
    for (day, content), row in sorted(by_content, key=lambda item: item[0][0], reverse=True):
        keys, hard = row["keys"], row["hard"]
        soft = sum(1 for k in keys if "soft" in reports[k] and k not in hard)
        complaints = sum(1 for k in keys if "complaint" in reports[k])
        sent = len(keys)
        out.append({"day": day, "content": content, "sent": sent, "bounced_hard": len(hard),
                    "bounced_soft": soft, "complaints": complaints,
                    "bounce_rate": round((len(hard) + soft) / sent, 4),
                    "hard_bounce_rate": round(len(hard) / sent, 4),
                    "complaint_rate": round(complaints / sent, 4)})
    return out


def since_of(text: str | None, now: float) -> float:
    from rules.durations import parse_duration

    if not text:
        return now - DEFAULT_DAYS * 86400
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since: {text!r} is neither an ISO time (2026-11-01) nor a duration "
                         "(7d)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def run(args: argparse.Namespace) -> int:
    from leadflow.cli import people
    from leadflow.db.database import Database
    from leadflow.settings import Settings

    since = since_of(args.since, time.time())
    ledger = Database.of(Settings.from_env())
    try:
        rows = figures(ledger, since)
    finally:
        ledger.close()

    def flag(row: dict[str, Any]) -> str:
        rate = row["complaint_rate"]
        return "over 0.3 %" if rate >= LIMIT else "over 0.1 %" if rate >= WATCH else ""

    shown = [{**row, "bounces": f"{row['bounce_rate']:.2%}", "complained": f"{row['complaint_rate']:.2%}",
              "flag": flag(row)} for row in rows]
    people.show(args.json, rows, lambda: people.rows("deliverability", shown, [
        ("day", "day"), ("content", "content"), ("sent", "sent"), ("bounced_hard", "hard"),
        ("bounced_soft", "soft"), ("bounces", "bounced"), ("complaints", "complaints"),
        ("complained", "complained"), ("flag", "flag")]))
    return 0
