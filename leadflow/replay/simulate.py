"""A history of many leads through one policy version, in virtual time: each lead through
rules.simulate (the lifecycle the live workflows run, rules.lifecycle), leads side by side on
every core (`simulate_many`); the log grouped by lead, a summary, progress on stderr."""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from rules.compile import CompiledPolicy, load_compiled
from rules.lifecycle import DEFAULT_RETENTION
from rules.simulate import LeadResult, simulate_lead, simulate_people


def group(lines: Iterable[str], source: str = "log") -> tuple[dict[str, list[dict[str, Any]]],
                                                             datetime | None]:
    """The log's events by lead (first appearance first), and its last event's time."""
    leads: dict[str, list[dict[str, Any]]] = {}
    last: datetime | None = None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}:{n}: not JSON: {err.msg}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("lead_id"), str) or not raw.get("at"):
            raise ValueError(f"{source}:{n}: an event with `lead_id` and `at` (what `leadflow events "
                             "export` and `leadflow generate` write)")
        try:
            at = datetime.fromisoformat(str(raw["at"]).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{source}:{n}: at: {raw['at']!r} is not an ISO time") from None
        last = at if last is None or at > last else last
        leads.setdefault(raw["lead_id"], []).append(raw)
    return leads, last


_POLICY: CompiledPolicy | None = None


def _load(path: str) -> None:
    global _POLICY
    _POLICY = load_compiled(path)


Job = tuple[dict[str, list[dict[str, Any]]], datetime | None, float | None]


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


def _run_one(job: Job) -> list[dict[str, Any]]:
    assert _POLICY is not None
    group, until, retention = job
    if len(group) == 1:
        ((lead_id, raws),) = group.items()
        return [simulate_lead(_POLICY, lead_id, raws, until, retention=retention).as_dict()]
    return [r.as_dict() for r in simulate_people(_POLICY, group, until, retention=retention).values()]


def simulate_many(policy_file: str, leads: dict[str, list[dict[str, Any]]], until: datetime | None,
                  processes: int | None = None, progress: Callable[[int], None] | None = None,
                  retention: float | None = DEFAULT_RETENTION) -> list[dict[str, Any]]:
    """Every lead's result, in the log's lead order; leads spread over `processes` (default: every
    core; 1: in this process); leads merged into one another run together (`people`). `progress`
    hears how many events each finished group had."""
    jobs: list[Job] = [(group, until, retention) for group in people(leads)]
    processes = processes or os.cpu_count() or 1
    results: dict[str, dict[str, Any]] = {}
    if processes <= 1 or len(jobs) < 2:
        _load(policy_file)
        for job in jobs:
            results.update((r["lead_id"], r) for r in _run_one(job))
            if progress:
                progress(sum(map(len, job[0].values())))
        return [results[lead_id] for lead_id in leads]
    context = multiprocessing.get_context("spawn")  # the engine's state is per process: no fork
    with context.Pool(processes, initializer=_load, initargs=(policy_file,)) as pool:
        size = max(1, min(200, len(jobs) // (processes * 8)))
        for job, done in zip(jobs, pool.imap(_run_one, jobs, chunksize=size), strict=True):
            results.update((r["lead_id"], r) for r in done)
            if progress:
                progress(sum(map(len, job[0].values())))
    return [results[lead_id] for lead_id in leads]


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Leads per final state, hand-offs per queue per ISO week, and time to sales-ready."""
    states = Counter(r["state"] for r in results)
    weekly: Counter[tuple[str, str]] = Counter()
    for r in results:
        for h in r["handoffs"]:
            year, week, _ = datetime.fromisoformat(h["at"].replace("Z", "+00:00")).isocalendar()
            weekly[(h["queue"], f"{year}-W{week:02d}")] += 1
    days = [(_at(r["sales_ready_at"]) - _at(r["signup_at"])).total_seconds() / 86400
            for r in results if r["sales_ready_at"] and r["signup_at"]]
    return {"leads": len(results), "states": dict(sorted(states.items(), key=lambda kv: str(kv[0]))),
            "handoffs_per_week": {f"{q} {w}": n for (q, w), n in sorted(weekly.items())},
            "handoffs": sum(len(r["handoffs"]) for r in results),
            "sales_ready": len(days),
            "median_days_to_sales_ready": round(statistics.median(days), 2) if days else None}


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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
