"""A history of many leads through one policy version, in virtual time: each lead through
rules.simulate (the lifecycle the live workflows run, rules.lifecycle), leads side by side on
every core (`simulate_many`); the log grouped by lead, a summary, progress on stderr."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import re
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError

from rules.compile import CompiledPolicy, load_compiled

if TYPE_CHECKING:
    from leadflow.db.database import Database
from rules.identity import lead_key
from rules.lifecycle import DEFAULT_RETENTION
from rules.models import Event, LeadRef, built
from rules.simulate import LeadResult, run_events, simulate_lead, simulate_people


def archived(ledger: Database) -> tuple[dict[str, list[dict[str, Any]]], datetime | None]:
    """The event archive's events by lead, read as a log is (`group`): what suggest, and the
    policy desk replay when no log is named."""
    from leadflow.archive.events import EventArchive  # not in the replay's processes: they read no database

    return group((json.dumps(event) for event in EventArchive(ledger).export()), "archive")


def group(lines: Iterable[str], source: str = "log") -> tuple[dict[str, list[dict[str, Any]]],
                                                             datetime | None]:
    """The log's events by lead (first appearance first), and its last event's time. Each line is
    read as the simulation will build its event, without the intake's validation (`_events`): a
    line of another shape (`_plain`) is validated as the intake would, and refused naming it."""
    collecting = gc.isenabled()
    gc.disable()  # a million events are millions of new objects, none in a cycle: no collection
    try:
        return _group(lines, source)
    finally:
        if collecting:
            gc.enable()


def _group(lines: Iterable[str], source: str) -> tuple[dict[str, list[dict[str, Any]]], datetime | None]:
    leads: dict[str, list[dict[str, Any]]] = {}
    last: datetime | None = None
    # a plain log's external ids that a line names beside an e-mail: that person's lead
    linked: dict[str, str] = {}
    plain: set[str] = set()  # the leads a plain log's lines named
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}:{n}: not JSON: {err.msg}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{source}:{n}: not an event (a JSON object with `type`, `at` and `lead`)")
        if not raw.get("at"):
            raise ValueError(f"{source}:{n}: an event needs its time, `at` (an ISO time)")
        try:
            at = at_of(str(raw["at"]))
        except ValueError:
            raise ValueError(f"{source}:{n}: at: {raw['at']!r} is not an ISO time") from None
        if not _plain(raw, line):
            try:
                Event.model_validate({k: v for k, v in raw.items() if k != "lead_id"})
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"{source}:{n}: bad event: {where}: {first['msg']}") from None
        if not isinstance(raw.get("lead_id"), str):
            raw["lead_id"] = _named(raw, source, n, linked)
            plain.add(raw["lead_id"])
        last = at if last is None or at > last else last
        leads.setdefault(raw["lead_id"], []).append(raw)
    # the export's order is the order its leads took their events; a person or a CRM writes
    # events in any order, and each happened at its `at` (a stable sort: the same time keeps
    # the line's order)
    for lead_id in plain:
        leads[lead_id].sort(key=lambda raw: at_of(str(raw["at"])))
    return _joined(leads, linked), last


def _named(raw: dict[str, Any], source: str, n: int, linked: dict[str, str]) -> str:
    """The lead of a plain log's line (as a person or a CRM writes events: the lead named by its
    e-mail or external id, no `lead_id`): the workflow id the intake would start for it."""
    lead = raw.get("lead")
    if "lead_id" in raw or not isinstance(lead, dict):
        raise ValueError(f"{source}:{n}: an event names its lead: `lead_id` (what `leadflow events "
                         "export` and `leadflow generate` write), or `lead` with an `email` or "
                         "`external_id`")
    email, external = lead.get("email"), lead.get("external_id")
    try:
        key = lead_key(LeadRef.model_construct(email=email if isinstance(email, str) else None,
                                               external_id=external if isinstance(external, str) else None))
    except ValueError:
        raise ValueError(f"{source}:{n}: the event's lead has no `email` and no `external_id`") from None
    if isinstance(email, str) and email.strip() and isinstance(external, str) and external.strip():
        linked.setdefault(lead_key(LeadRef.model_construct(external_id=external)), key)
    return key


def _joined(leads: dict[str, list[dict[str, Any]]], linked: dict[str, str]
            ) -> dict[str, list[dict[str, Any]]]:
    """One lead per person, as the intake keeps them: the lines that named a person by an
    external id alone join the lead that a line naming both gave the id to, in time order."""
    for alone, person in linked.items():
        if alone == person or alone not in leads or person not in leads:
            continue
        moved = leads.pop(alone)
        for raw in moved:
            raw["lead_id"] = person
        leads[person] = sorted([*leads[person], *moved], key=lambda raw: at_of(str(raw["at"])))
    return leads


_FIELDS = frozenset(("id", "type", "at", "lead", "data", "lead_id"))
_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # as Event.type's pattern and length


def _plain(raw: dict[str, Any], line: str) -> bool:
    """The line holds an event of the shape `_events` builds from: Event's fields, each of its type
    (the export's events were validated when taken; the intake's other rules are not asked again),
    and no NaN or Infinity (JSON has neither; Python's reader takes them)."""
    kind, id_, lead, data = raw.get("type"), raw.get("id"), raw.get("lead"), raw.get("data")
    return (raw.keys() <= _FIELDS and isinstance(raw["at"], str)
            and isinstance(kind, str) and _TYPE.fullmatch(kind) is not None
            and (id_ is None or isinstance(id_, str))
            and (lead is None or (isinstance(lead, dict) and isinstance(lead.get("email", ""), str)
                                  and isinstance(lead.get("external_id", ""), str)))
            and (data is None or isinstance(data, dict))
            and "NaN" not in line and "Infinity" not in line)


_POLICY: CompiledPolicy | None = None


def _load(path: str) -> None:
    global _POLICY
    _POLICY = load_compiled(path)


class Batch(NamedTuple):
    """Groups of leads (`people`) as columns: what crosses to a worker process. Strings, and each
    event's own `lead` and `data` objects (a lead's repeated `lead` sent once): no models, no
    per-event dict, so pickling is a fraction of the simulation."""

    leads: list[str]  # lead ids, group after group
    sizes: list[int]  # leads per group
    counts: list[int]  # events per lead
    ids: list[str | None]  # the events, lead after lead
    types: list[str]
    ats: list[str]
    refs: list[dict[str, Any] | None]
    data: list[dict[str, Any] | None]


Job = tuple[Batch, datetime | None, float | None]


def people(leads: dict[str, list[dict[str, Any]]]) -> list[dict[str, list[dict[str, Any]]]]:
    """The leads in groups that run together: a lead alone, or leads an `identify` event merged
    (its `data.merge.lead_id`), which one simulation takes in one time order."""
    parent = {lead_id: lead_id for lead_id in leads}

    def root(lead_id: str) -> str:
        while parent[lead_id] != lead_id:
            parent[lead_id] = parent[parent[lead_id]]
            lead_id = parent[lead_id]
        return lead_id

    for lead_id, raws in leads.items():
        for raw in raws:
            merge = (raw.get("data") or {}).get("merge") if raw.get("type") == "identify" else None
            other = merge.get("lead_id") if isinstance(merge, dict) else None
            if isinstance(other, str) and other in parent:
                parent[root(other)] = root(lead_id)
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for lead_id, raws in leads.items():
        groups.setdefault(root(lead_id), {})[lead_id] = raws
    return list(groups.values())


def batches(groups: Iterable[dict[str, list[dict[str, Any]]]], events: int) -> Iterator[Batch]:
    """The groups as Batches of about `events` events each (a group is never split)."""
    batch = Batch([], [], [], [], [], [], [], [])
    names: dict[str, str] = {}  # one string object per event type: pickled once a batch
    for group in groups:
        batch.sizes.append(len(group))
        for lead_id, raws in group.items():
            batch.leads.append(lead_id)
            batch.counts.append(len(raws))
            last: dict[str, Any] | None = None
            for raw in raws:
                kind = raw["type"]
                lead = raw.get("lead")
                if lead is not None and last is not None and _same(lead, last):
                    lead = last
                last = lead
                batch.ids.append(raw.get("id"))
                batch.types.append(names.setdefault(kind, kind))
                batch.ats.append(raw["at"])
                batch.refs.append(lead)
                batch.data.append(raw.get("data"))
        if len(batch.ids) >= events:
            yield batch
            batch = Batch([], [], [], [], [], [], [], [])
    if batch.sizes:
        yield batch


def _same(a: Any, b: Any) -> bool:
    """Equal, in the same order and of the same types throughout (True is not 1, nor 1.0 1): the
    one can stand for the other."""
    if type(a) is not type(b) or a != b:
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return all(map(_same, a, b))
    return True


# an event as it crosses: (id, type, at, lead, data), the columns of a Batch side by side
Row = tuple[str | None, str, str, dict[str, Any] | None, dict[str, Any] | None]


def _events(rows: Iterable[Row]) -> Iterator[Event]:
    """A lead's archived events, built without the intake's validation (they were validated when
    taken; the read checked their shape, `group`): what Event.model_validate makes of each, a few
    times faster. Events that carry the same `lead` object (`batches`) share its LeadRef: nothing
    changes an event's lead."""
    last: dict[str, Any] | None = None
    ref = LeadRef()
    for id_, kind, at, lead, data in rows:
        if lead is not last:
            ref, last = LeadRef.model_construct(**lead) if lead is not None else LeadRef(), lead
        yield built(Event, {"id": id_, "type": kind, "at": at_of(at), "lead": ref,
                            # validation's copy: what the simulation does with it stays its own
                            "data": dict(data) if data is not None else {}})


def _raw(row: Row) -> dict[str, Any]:
    return {k: v for k, v in zip(("id", "type", "at", "lead", "data"), row, strict=True) if v is not None}


def _run_batch(job: Job) -> list[dict[str, Any]]:
    """Each lead's result (`LeadResult.as_dict`), in the batch's order."""
    assert _POLICY is not None
    batch, until, retention = job
    rows: Iterator[Row] = zip(batch.ids, batch.types, batch.ats, batch.refs, batch.data, strict=True)
    leads = zip(batch.leads, batch.counts, strict=True)
    out: list[dict[str, Any]] = []
    for size in batch.sizes:
        group = {lead_id: list(islice(rows, n)) for lead_id, n in islice(leads, size)}
        if size == 1:
            ((lead_id, events),) = group.items()
            result = run_events(_POLICY, lead_id, _events(events), until, retention=retention)
            out.append(result.as_dict())
        else:  # leads merged into one another: rules.simulate takes them as the archive has them
            raws = {lead_id: list(map(_raw, events)) for lead_id, events in group.items()}
            merged = simulate_people(_POLICY, raws, until, retention=retention)
            out.extend(r.as_dict() for r in merged.values())
    return out


def simulate_many(policy_file: str, leads: dict[str, list[dict[str, Any]]], until: datetime | None,
                  processes: int | None = None, progress: Callable[[int], None] | None = None,
                  retention: float | None = DEFAULT_RETENTION) -> list[dict[str, Any]]:
    """Every lead's result, in the log's lead order; leads spread over `processes` (default: every
    core; 1: in this process); leads merged into one another run together (`people`). The leads
    cross to the workers in Batches (columns) and their events are built there without the
    intake's validation (`_events`). `progress` hears how many events each finished batch had."""
    groups = people(leads)
    processes = processes or os.cpu_count() or 1
    total = sum(map(len, leads.values()))
    # about 16 batches a process: the last ones finish close together
    size = max(200, min(5000, total // (processes * 16)))
    jobs = ((batch, until, retention) for batch in batches(groups, size))
    results: dict[str, dict[str, Any]] = {}
    for out, events in _spread(policy_file, jobs, processes if len(groups) > 1 else 1):
        results.update((r["lead_id"], r) for r in out)
        if progress:
            progress(events)
    return [results[lead_id] for lead_id in leads]


def _spread(policy_file: str, jobs: Iterable[Job],
            processes: int) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Each job's results and events, as they finish: in this process, or over `processes`."""
    if processes <= 1:
        _load(policy_file)
        yield from map(_counted, jobs)
        return
    context = multiprocessing.get_context("spawn")  # the engine's state is per process: no fork
    with context.Pool(processes, initializer=_load, initargs=(policy_file,)) as pool:
        yield from pool.imap_unordered(_counted, jobs)


def _counted(job: Job) -> tuple[list[dict[str, Any]], int]:
    return _run_batch(job), len(job[0].ids)


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Leads per final state, hand-offs per queue per ISO week, time to sales-ready, the
    e-mails delivery manners moved or skipped, and the e-mails of each A/B test per variant."""
    states = Counter(r["state"] for r in results)
    weekly: Counter[tuple[str, str]] = Counter()
    for r in results:
        for h in r["handoffs"]:
            year, week, _ = datetime.fromisoformat(h["at"].replace("Z", "+00:00")).isocalendar()
            weekly[(h["queue"], f"{year}-W{week:02d}")] += 1
    days = [(at_of(r["sales_ready_at"]) - at_of(r["signup_at"])).total_seconds() / 86400
            for r in results if r["sales_ready_at"] and r["signup_at"]]
    return {"leads": len(results), "states": dict(sorted(states.items(), key=lambda kv: str(kv[0]))),
            "handoffs_per_week": {f"{q} {w}": n for (q, w), n in sorted(weekly.items())},
            "handoffs": sum(len(r["handoffs"]) for r in results),
            "sales_ready": len(days),
            "median_days_to_sales_ready": round(statistics.median(days), 2) if days else None,
            # marketing e-mails the policy's delivery manners moved to a later slot, and skipped
            "sends_moved": sum(r.get("sends_moved", 0) for r in results),
            "sends_skipped": sum(r.get("sends_skipped", 0) for r in results),
            "ab_sends": ab_sends(results)}


def ab_sends(results: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per A/B test (rules.variants), the e-mails that went out per variant, by name."""
    counted: Counter[tuple[str, str]] = Counter()
    for r in results:
        counted.update((test, variant) for test, variant in r.get("ab_sends", ()))
    out: dict[str, dict[str, int]] = {}
    for (test, variant), n in sorted(counted.items()):
        out.setdefault(test, {})[variant] = n
    return out


def per_variant(sent: dict[str, int]) -> str:
    """One A/B test's sends for a line of a table: `welcome-a 201, welcome-b 199`."""
    return ", ".join(f"{variant} {n}" for variant, n in sent.items()) or "none"


def at_of(text: str) -> datetime:
    """An ISO time; one without an offset is UTC (as Event reads it)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Progress:
    """Events done, on stderr: a bar when it is a terminal, a line now and then when it is not."""

    def __init__(self, total: int, stream: Any = None) -> None:
        stream = stream if stream is not None else sys.stderr  # the one in force now, not at import
        self.total, self.done, self.stream = max(total, 1), 0, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._shown = -1

    def __call__(self, events: int) -> None:
        self.done += events
        share = self.done / self.total
        step = int(share * (50 if self.tty else 10))
        if step == self._shown:
            return
        self._shown = step
        if self.tty:
            bar = "#" * int(share * 40)
            self.stream.write(f"\r[{bar:<40}] {self.done:,}/{self.total:,} events")
            if self.done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"{self.done:,}/{self.total:,} events\n")
        self.stream.flush()


__all__ = ["LeadResult", "Progress", "group", "people", "simulate_lead", "simulate_many", "summary"]
