"""Who in sales would have taken each simulated hand-off: the hand-offs of a simulation replayed
in time order against a roster, as the Desk assigns them live. A hand-off goes, when it opens,
to the next free rep of its queue (works the queue, not away at that moment, fewer open tasks
than capacity) by smooth weighted round robin (routing.pick, one set of credits per queue);
with none free it waits in its queue and, oldest first, takes the first place that frees (a
task of a rep is answered or moves on, a rep comes back). A queue no rep works keeps its
hand-offs unassigned. An SLA breach that escalates a hand-off to another queue takes it from its
rep and asks that queue for one, as the Desk does when a task changes queue.

The roster is taken as it stands, as if it had been in force over the whole history. Tasks open
before the history began are not known: every rep starts with none. Pure: no I/O, no clock."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadflow.routing.pick import pick
from leadflow.routing.roster import Roster

# At one moment, places free (answers, returns, moves away) before new hand-offs ask for one: an
# answer and a hand-off at the same instant must not make the hand-off wait for a free place.
CLOSE, BACK, MOVE, OPEN = 0, 1, 2, 3


@dataclass(frozen=True)
class Task:
    id: str
    queue: str
    opened: datetime  # aware, like every moment of a simulation
    closed: datetime | None = None  # sales answered; None: still open at the end
    moves: tuple[tuple[datetime, str], ...] = ()  # escalations: when, and to which queue


@dataclass
class Assignment:
    """One task's stay in one queue: a task that moved on has one per queue."""

    task: Task
    queue: str
    since: datetime  # it entered the queue
    rep: str | None = None
    at: datetime | None = None  # the rep took it; later than `since` if it waited
    until: datetime | None = None  # answered or moved on; None: still there at the end


@dataclass
class Load:
    assignments: list[Assignment]  # in the order the stays began
    assigned: Counter[tuple[str, str]]  # (rep, ISO week the rep took it) -> tasks
    waited: Counter[tuple[str, str]]  # (queue, ISO week it entered) -> tasks that found no rep free
    unstaffed: Counter[tuple[str, str]]  # (queue, ISO week it entered) -> tasks of a queue no rep works
    waiting_at_end: int  # waited and never got a rep, nor an answer
    open_at_end: dict[str, int]  # rep -> tasks still open


def week_of(at: datetime) -> str:
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def tasks_of(results: Iterable[Mapping[str, Any]]) -> list[Task]:
    """The hand-offs of simulated leads (simulate_many's results), in the leads' order."""
    tasks = []
    for result in results:
        for h in result["handoffs"]:
            answered = h.get("answered_at")
            moves = ((_at(h["escalated_at"]), h["escalated_to"]),) if h.get("escalated_at") else ()
            tasks.append(Task(h["task"], h["queue"], _at(h["at"]), _at(answered) if answered else None,
                              moves))
    return tasks


def replay(tasks: Sequence[Task], roster: Roster) -> Load:
    """Each task's reps and when they took it, and the sales load per rep and per queue per week."""
    staffed = set(roster.queues())
    holding: Counter[str] = Counter()  # open tasks per rep
    credits: dict[str, dict[str, float]] = {}  # per queue, as the Desk keeps them
    # per queue, (age, stay) by age as the Desk's line (created_at): a task that moved on from
    # another queue comes before younger ones; those that left are dropped as they reach the head
    waiting: dict[str, list[tuple[tuple[datetime, int], int]]] = {}
    stays: list[Assignment] = []
    current: list[int] = [-1] * len(tasks)  # each task's stay now
    answered = [False] * len(tasks)
    heap: list[tuple[datetime, int, int, int]] = [(t.opened, OPEN, i, 0) for i, t in enumerate(tasks)]
    heap += [(rep.away.until, BACK, n, 0) for n, rep in enumerate(roster.reps)
             if rep.away is not None and rep.away.until is not None]
    heapq.heapify(heap)

    def enter(i: int, queue: str, at: datetime) -> None:
        current[i] = len(stays)
        stays.append(Assignment(tasks[i], queue, at))
        if queue in staffed:
            heapq.heappush(waiting.setdefault(queue, []), ((tasks[i].opened, i), current[i]))

    def leave(i: int, at: datetime) -> None:
        stay = stays[current[i]]
        stay.until = at
        if stay.rep is not None:
            holding[stay.rep] -= 1

    def free(queue: str, at: datetime) -> list[tuple[str, int]]:
        return [(rep.id, rep.capacity) for rep in roster.in_queue(queue)
                if not rep.away_at(at) and holding[rep.id] < rep.capacity]

    def assign_waiting(at: datetime) -> None:
        """Give free places to waiting tasks, oldest first across queues (a rep may work several)."""
        while True:
            best: tuple[tuple[datetime, int], str, list[tuple[str, int]]] | None = None
            for queue, line in waiting.items():
                while line and stays[line[0][1]].until is not None:
                    heapq.heappop(line)
                if not line or (best is not None and line[0][0] >= best[0]):
                    continue
                reps = free(queue, at)
                if reps:
                    best = (line[0][0], queue, reps)
            if best is None:
                return
            _, queue, reps = best
            chosen, after = pick(reps, credits.get(queue, {}))
            assert chosen is not None  # a free rep has a place, so a weight above 0
            credits.setdefault(queue, {}).update(after)
            stay = stays[heapq.heappop(waiting[queue])[1]]
            holding[chosen] += 1
            stay.rep, stay.at = chosen, at

    while heap:
        at, kind, i, n = heapq.heappop(heap)
        if kind == OPEN:
            task = tasks[i]
            enter(i, task.queue, at)
            if task.closed is not None:
                heapq.heappush(heap, (max(task.closed, at), CLOSE, i, 0))
            if task.moves:
                heapq.heappush(heap, (max(task.moves[0][0], at), MOVE, i, 0))
        elif kind == CLOSE:
            answered[i] = True
            leave(i, at)
        elif kind == MOVE:
            if answered[i]:
                continue
            leave(i, at)
            enter(i, tasks[i].moves[n][1], at)
            if n + 1 < len(tasks[i].moves):
                heapq.heappush(heap, (max(tasks[i].moves[n + 1][0], at), MOVE, i, n + 1))
        assign_waiting(at)

    assigned: Counter[tuple[str, str]] = Counter()
    waited: Counter[tuple[str, str]] = Counter()
    unstaffed: Counter[tuple[str, str]] = Counter()
    for stay in stays:
        week = week_of(stay.since)
        if stay.queue not in staffed:
            unstaffed[(stay.queue, week)] += 1
            continue
        if stay.rep is not None and stay.at is not None:
            assigned[(stay.rep, week_of(stay.at))] += 1
        if stay.at is None or stay.at > stay.since:
            waited[(stay.queue, week)] += 1
    waiting_at_end = sum(1 for s in stays if s.queue in staffed and s.rep is None and s.until is None)
    return Load(stays, assigned, waited, unstaffed, waiting_at_end,
                {rep: n for rep, n in holding.items() if n > 0})


__all__ = ["Assignment", "Load", "Task", "replay", "tasks_of", "week_of"]
