"""The roster and the assignments in the shared database: every worker and API on every machine
sees one roster, and one rep's open tasks are counted once whichever worker assigned them."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, select, text, update

from leadflow.db.database import Database
from leadflow.db.schema import roster_meta, roster_reps, route_credits, task_assignments
from leadflow.routing.pick import pick
from leadflow.routing.roster import Away, Rep, Roster, RosterInvalid, parse_roster

log = logging.getLogger("leadflow.routing")
FILE_SHA = "file_sha"
FILE_PROBLEM = "file_problem"


class Desk:
    def __init__(self, ledger: Database, roster_file: Path | None = None) -> None:
        self.ledger = ledger
        self.roster_file = roster_file
        self._seen_file: tuple[int, int, str] | None = None  # (mtime_ns, size, sha) last read
        self._file_lock = threading.Lock()
        self._upsert_task = ledger.insert(task_assignments).on_conflict_do_nothing(index_elements=["task"])
        credit = ledger.insert(route_credits)
        self._credit = credit.on_conflict_do_update(index_elements=["queue", "rep"],
                                                   set_={"credit": credit.excluded.credit})
        meta = ledger.insert(roster_meta)
        self._meta = meta.on_conflict_do_update(index_elements=["key"], set_={"value": meta.excluded.value})

    # -- the roster ----------------------------------------------------------------------------

    def roster(self) -> Roster:
        self.sync_file()
        with self.ledger.engine.connect() as db:
            return _read_roster(db)

    def file_problem(self) -> str | None:
        with self.ledger.engine.connect() as db:
            value = db.execute(select(roster_meta.c.value).where(roster_meta.c.key == FILE_PROBLEM)).scalar()
        return value or None

    def sync_file(self) -> None:
        """Take the roster file when its content changed since it was last taken (by any process
        that shares the database): an edit counts for the next task, with no restart. A file that
        does not validate is logged and left; the roster stays as it was."""
        path = self.roster_file
        if path is None:
            return
        try:
            stat = path.stat()
        except OSError:
            return
        with self._file_lock:
            seen, raw = self._seen_file, None
            if seen is not None and seen[:2] == (stat.st_mtime_ns, stat.st_size):
                sha = seen[2]
            else:
                raw = path.read_bytes()
                sha = hashlib.sha256(raw).hexdigest()
                self._seen_file = (stat.st_mtime_ns, stat.st_size, sha)
            with self.ledger.engine.connect() as db:
                taken = db.execute(select(roster_meta.c.value).where(roster_meta.c.key == FILE_SHA)).scalar()
            if taken == sha:
                return
            raw = raw if raw is not None else path.read_bytes()
            try:
                roster = parse_roster(raw, str(path))
            except RosterInvalid as err:
                log.error("roster file refused, the roster stays as it was:\n%s", err)
                with self.ledger.writing() as db:
                    db.execute(self._meta, [{"key": FILE_SHA, "value": sha},
                                            {"key": FILE_PROBLEM, "value": str(err)}])
                return
            self.replace(roster, by=f"file {path.name}", file_sha=sha)
            log.info("roster taken from %s: %d reps", path, len(roster.reps))

    def replace(self, roster: Roster, by: str, file_sha: str | None = None) -> Roster:
        now = _now()
        with self.ledger.writing() as db:
            db.execute(delete(roster_reps))
            if roster.reps:
                rows = [_rep_row(rep, i, now, by) for i, rep in enumerate(roster.reps)]
                db.execute(roster_reps.insert(), rows)
            if file_sha is not None:
                db.execute(self._meta, [{"key": FILE_SHA, "value": file_sha},
                                        {"key": FILE_PROBLEM, "value": ""}])
        return roster

    def put_rep(self, rep: Rep, by: str) -> Rep:
        """Add a rep, or change one (its place in the roster stays)."""
        now = _now()
        with self.ledger.writing() as db:
            position = db.execute(select(roster_reps.c.position).where(roster_reps.c.id == rep.id)).scalar()
            if position is None:
                position = (db.execute(select(func.max(roster_reps.c.position))).scalar() or 0) + 1
            db.execute(delete(roster_reps).where(roster_reps.c.id == rep.id))
            db.execute(roster_reps.insert(), [_rep_row(rep, position, now, by)])
        return rep

    def remove_rep(self, rep_id: str) -> bool:
        with self.ledger.writing() as db:
            return bool(db.execute(delete(roster_reps).where(roster_reps.c.id == rep_id)).rowcount)

    # -- assignments ---------------------------------------------------------------------------

    def assign(self, task: str, queue: str, lead: str, at: datetime, exclude: tuple[str, ...] = ()
               ) -> dict[str, Any]:
        """The rep who takes the task: the one it has (a retried call), or the next free rep of
        the queue by weighted round robin; none free: the task waits in the queue. `exclude`:
        reps it must not go to (its holder, when an SLA breach passes it on). Also when the task
        moves to another queue: it leaves its rep there."""
        self.sync_file()
        now = at.timestamp()
        c = task_assignments.c
        with self.ledger.writing() as db:
            self._serialise(db)
            db.execute(self._upsert_task.values(task=task, queue=queue, lead=lead, status="waiting",
                                                created_at=now))
            row = db.execute(select(c.queue, c.rep, c.status).where(c.task == task)).one()
            if row.status == "closed":
                return {"rep": None, "queue": row.queue, "waiting": False, "closed": True}
            if row.rep is not None and row.queue == queue and row.rep not in exclude:
                return _answer(db, row.rep, queue)
            roster = _read_roster(db)
            counts: dict[str, int] = {rep: n for rep, n in db.execute(select(c.rep, func.count()).where(
                c.status == "open", c.rep.is_not(None), c.task != task).group_by(c.rep)).all()}
            free = [(r.id, r.capacity) for r in roster.in_queue(queue)
                    if r.id not in exclude and not r.away_at(at) and counts.get(r.id, 0) < r.capacity]
            credits = dict(db.execute(select(route_credits.c.rep, route_credits.c.credit)
                                      .where(route_credits.c.queue == queue)).all())
            chosen, after = pick(free, credits)
            if chosen is None and row.rep is not None and row.queue == queue and row.status == "open":
                # passed on at a breach, but nobody else is free: it stays where it is
                why = why_none_free(roster, queue, at, counts, exclude)
                return _answer(db, row.rep, queue) | {"kept": True, "why": why}
            if after:
                db.execute(self._credit, [{"queue": queue, "rep": rep, "credit": v}
                                          for rep, v in after.items()])
            db.execute(update(task_assignments).where(c.task == task).values(
                queue=queue, rep=chosen, status="open" if chosen else "waiting",
                assigned_at=now if chosen else None))
            if chosen is None:
                back = [r.away.until for r in roster.in_queue(queue)
                        if r.away is not None and r.away.until is not None and r.away_at(at)]
                return {"rep": None, "queue": queue, "waiting": True,
                        "why": why_none_free(roster, queue, at, counts, exclude),
                        "back_at": min(back).isoformat() if back else None}
            return _answer(db, chosen, queue)

    def release(self, task: str, at: datetime) -> list[str]:
        """The task is answered: its rep's place frees. The tasks waiting in its queue, oldest
        first, as many as places are free now (the caller wakes them)."""
        c = task_assignments.c
        with self.ledger.writing() as db:
            self._serialise(db)
            queue = db.execute(select(c.queue).where(c.task == task)).scalar()
            db.execute(update(task_assignments).where(c.task == task).values(
                status="closed", closed_at=at.timestamp()))
            if queue is None:
                return []
            waiting = db.execute(select(c.task).where(c.status == "waiting", c.queue == queue)
                                 .order_by(c.created_at).limit(5)).scalars().all()
        return list(waiting)

    def of(self, tasks: list[str]) -> dict[str, dict[str, Any]]:
        """The assignment of each task that has one."""
        if not tasks:
            return {}
        c = task_assignments.c
        with self.ledger.engine.connect() as db:
            rows = db.execute(select(task_assignments).where(c.task.in_(tasks))).mappings().all()
        return {row["task"]: dict(row) for row in rows}

    def load(self) -> dict[str, int]:
        """Open tasks per rep."""
        c = task_assignments.c
        with self.ledger.engine.connect() as db:
            return dict(db.execute(select(c.rep, func.count()).where(
                c.status == "open", c.rep.is_not(None)).group_by(c.rep)).all())

    def assigned(self, rep: str | None = None, queue: str | None = None, waiting: bool = False
                 ) -> list[dict[str, Any]]:
        """Open assignments (of a rep, of a queue), or the tasks waiting for a rep."""
        c = task_assignments.c
        query = select(task_assignments).where(c.status == ("waiting" if waiting else "open"))
        if rep is not None:
            query = query.where(c.rep == rep)
        if queue is not None:
            query = query.where(c.queue == queue)
        with self.ledger.engine.connect() as db:
            return [dict(r) for r in db.execute(query.order_by(c.created_at)).mappings().all()]

    def _serialise(self, db: Connection) -> None:
        """One assignment at a time across every process: two workers must not both give a rep
        her last free place. SQLite has one writer already; PostgreSQL takes a table lock."""
        if self.ledger.engine.dialect.name == "postgresql":
            db.execute(text("LOCK TABLE task_assignments IN SHARE ROW EXCLUSIVE MODE"))


def _answer(db: Connection, rep_id: str, queue: str) -> dict[str, Any]:
    c = roster_reps.c
    row = db.execute(select(c.name, c.email).where(c.id == rep_id)).first()
    return {"rep": rep_id, "name": row.name if row else "", "email": row.email if row else "",
            "queue": queue, "waiting": False}


def why_none_free(roster: Roster, queue: str, at: datetime, counts: dict[str, int],
                  exclude: tuple[str, ...]) -> str:
    """Why no rep of the queue takes a task now: routing's log and the inbox say it alike."""
    reps = roster.in_queue(queue)
    if not reps:
        return f"no rep works queue {queue}"
    parts = []
    for r in reps:
        if r.id in exclude:
            parts.append(f"{r.id} has it")
        elif r.away_at(at):
            parts.append(f"{r.id} away")
        else:
            parts.append(f"{r.id} full ({counts.get(r.id, 0)}/{r.capacity})")
    return "no rep free: " + ", ".join(parts)


def _read_roster(db: Connection) -> Roster:
    query = select(roster_reps).order_by(roster_reps.c.position, roster_reps.c.id)
    rows = db.execute(query).mappings().all()
    reps = []
    for row in rows:
        away = None
        if row["away_from"] is not None or row["away_until"] is not None:
            away = Away(**{"from": _dt(row["away_from"]), "until": _dt(row["away_until"])})
        reps.append(Rep(id=row["id"], name=row["name"], email=row["email"], queues=json.loads(row["queues"]),
                        capacity=row["capacity"], away=away))
    return Roster(reps=reps)


def _rep_row(rep: Rep, position: int, now: float, by: str) -> dict[str, Any]:
    away = rep.away
    return {"id": rep.id, "position": position, "name": rep.name, "email": rep.email,
            "queues": json.dumps(rep.queues), "capacity": rep.capacity,
            "away_from": away.from_.timestamp() if away and away.from_ else None,
            "away_until": away.until.timestamp() if away and away.until else None,
            "updated_at": now, "updated_by": by}


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, timezone.utc) if ts is not None else None


def _now() -> float:
    return datetime.now(timezone.utc).timestamp()
