"""What retention's batches cost intake: an archive of generated events (two years of them, with
the funnel's transitions) and a ledger of ended deliveries in the shared database, pruned to one
year by the prune activities themselves (activities.prune, in Temporal's ActivityEnvironment),
while a thread writes leads' batches to the archive as the evaluation does
(leadflow.archive.events.EventArchive.add) every 10 ms. Reports the batches (the longest write
transaction) and the intake writes' latency with and without the pruning beside them. Last
line: one JSON object.

    .venv/bin/python bench/prune.py [--events 200000] [--batch 5000] [--quiet 3] [--url sqlite:///...]

--url: the database (default: a fresh SQLite file in a temporary folder; a PostgreSQL URL is
used as it is and its archive and ledger emptied first)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from sqlalchemy import func, select  # noqa: E402
from temporalio.testing import ActivityEnvironment  # noqa: E402

from activities.prune import ARCHIVE, LEDGER, PruneActivities, PruneRequest  # noqa: E402
from bench.quick import parse  # noqa: E402
from leadflow.archive.events import EventArchive, Taken  # noqa: E402
from leadflow.db.database import Database  # noqa: E402
from leadflow.db.schema import deliveries, events, transitions  # noqa: E402
from rules.models import Event  # noqa: E402

DAY = 86400.0
TYPES = ("page_view", "email_open", "email_click", "pricing_view", "webinar_attend")


def fill(ledger: Database, n: int, now: float, seed: int) -> None:
    """`n` events of n/8 leads over two years before `now`, a transition per tenth event and a
    delivery per fourth, ended; written a page at a time, oldest first, as they would have come."""
    rng = random.Random(seed)
    page = 10000
    for start in range(0, n, page):
        rows, moves, sent = [], [], []
        for i in range(start, min(n, start + page)):
            at = now - 730 * DAY + (730 * DAY) * i / n
            lead = f"lead-{rng.randrange(max(1, n // 8)):07d}"
            body = {"id": f"e{i}", "type": rng.choice(TYPES), "data": {
                "path": f"/blog/{rng.randrange(500)}", "utm_source": "newsletter",
                "utm_campaign": "q3-launch", "referrer": "https://www.example.com/some/long/page?with=query"}}
            rows.append({"lead": lead, "id": f"e{i}", "type": body["type"], "at": at, "taken_at": at,
                         "seq": 0, "body": json.dumps(body, separators=(",", ":"))})
            if i % 10 == 0:
                moves.append({"lead": lead, "event_id": f"e{i}", "seq": 0, "at": at, "from_state": "new",
                              "to_state": "engaged", "rule": "engaged", "policy": "lead-lifecycle",
                              "version": 1, "why": "score over 20"})
            if i % 4 == 0:
                sent.append({"key": f"email:{lead}:e{i}", "kind": "email", "lead": lead,
                             "target": f"{lead}@example.com", "subject": "welcome-guide", "status": "sent",
                             "message_id": f"<{i}@leadflow>", "created_at": at, "updated_at": at,
                             "sent_at": at})
        with ledger.writing() as db:
            db.execute(events.insert(), rows)
            if moves:
                db.execute(transitions.insert(), moves)
            if sent:
                db.execute(deliveries.insert(), sent)


class Intake(threading.Thread):
    """Leads' batches of three events written as the evaluation writes them, one every 10 ms;
    each write's latency kept."""

    def __init__(self, archive: EventArchive) -> None:
        super().__init__(daemon=True)
        self.archive = archive
        self.waits: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            batch = Taken(lead=f"live-{n % 500}", at=time.time(), events=[
                Event.model_validate({"id": f"live-{n}-{k}", "type": "page_view",
                                      "data": {"path": "/pricing"}}) for k in range(3)])
            begin = time.perf_counter()
            self.archive.add([batch])
            self.waits.append(time.perf_counter() - begin)
            time.sleep(0.01)


def latency(waits: list[float]) -> dict[str, float]:
    ordered = sorted(waits)
    return {"writes": len(ordered), "p50_ms": round(1000 * statistics.median(ordered), 2),
            "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2),
            "max_ms": round(1000 * ordered[-1], 2)}


def measure(url: str, n: int, batch: int, seed: int, quiet_seconds: float) -> dict[str, Any]:
    ledger = Database.open(url)
    try:
        if ledger.engine.dialect.name != "sqlite":
            with ledger.writing() as db:
                for table in (events, transitions, deliveries):
                    db.execute(table.delete())
        now = time.time()
        begin = time.perf_counter()
        fill(ledger, n, now, seed)
        filled = time.perf_counter() - begin
        archive = EventArchive(ledger)
        quiet = Intake(archive)
        quiet.start()
        time.sleep(quiet_seconds)
        quiet.stop.set()
        quiet.join()
        busy = Intake(archive)
        busy.start()
        acts = PruneActivities(ledger)
        before = now - 365 * DAY
        begin = time.perf_counter()
        pruned = asyncio.run(ActivityEnvironment().run(acts.prune_archive, PruneRequest(before=before,
                                                                                        batch=batch)))
        archive_s = time.perf_counter() - begin
        begin = time.perf_counter()
        ledger_done = asyncio.run(ActivityEnvironment().run(acts.prune_ledger, PruneRequest(before=before,
                                                                                            batch=batch)))
        ledger_s = time.perf_counter() - begin
        busy.stop.set()
        busy.join()
        with ledger.engine.connect() as db:  # what a prune that stopped early would have left
            left_over = sum(db.execute(select(func.count()).select_from(t.table).where(
                t.age < before, *([t.only] if t.only is not None else []))).scalar_one()
                for t in (*ARCHIVE, *LEDGER))
        assert left_over == 0, f"{left_over} rows older than the cutoff left"
        return {"bench": "prune", "database": ledger.engine.dialect.name, "events": n,
                "filled_s": round(filled, 1), "batch_rows": batch,
                "archive": {"rows": pruned.rows, "batches": pruned.batches, "seconds": round(archive_s, 2),
                            "longest_batch_ms": round(1000 * pruned.longest, 1)},
                "ledger": {"rows": ledger_done.rows, "batches": ledger_done.batches,
                           "seconds": round(ledger_s, 2),
                           "longest_batch_ms": round(1000 * ledger_done.longest, 1)},
                "intake_quiet": latency(quiet.waits), "intake_while_pruning": latency(busy.waits),
                "longest_batch_ms": round(1000 * max(pruned.longest, ledger_done.longest), 1),
                "intake_p99_ms": latency(busy.waits)["p99_ms"],
                "intake_max_ms": latency(busy.waits)["max_ms"], "left_over": left_over}
    finally:
        ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--url", default="")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quiet", type=float, default=3.0, help="seconds of intake measured with no pruning")
    args = parse(parser, {"events": 50_000, "quiet": 1.0})
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/leadflow.sqlite"
        result = measure(url, args.events, args.batch, args.seed, args.quiet)
    for part in ("archive", "ledger"):
        got = result[part]
        print(f"{part}: {sum(got['rows'].values()):,} rows in {got['batches']} batches, {got['seconds']} s; "
              f"longest batch {got['longest_batch_ms']} ms")
    for part in ("intake_quiet", "intake_while_pruning"):
        got = result[part]
        print(f"{part}: {got['writes']} writes, p50 {got['p50_ms']} ms, p99 {got['p99_ms']} ms, "
              f"max {got['max_ms']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
