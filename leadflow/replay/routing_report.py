"""The routing part of `policy simulate` and `policy diff`: the sales load per rep per week, from
the simulated hand-offs replayed against the roster (leadflow.replay.routing_load). The roster is the
one `--roster` names, else the settings' roster file; with none, the section says so and the
load is the hand-offs per queue per week."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadflow.replay.routing_load import replay, tasks_of, week_of
from leadflow.routing.roster import Roster, parse_roster

Section = dict[str, Any]


@dataclass(frozen=True)
class RosterChoice:
    roster: Roster | None
    file: str | None
    note: str = ""  # why there is no roster


def choose_roster(option: str | None, default: Path | None = None) -> RosterChoice:
    """`--roster FILE`, else `default` (the settings' roster file) if it exists. A roster that was
    named but cannot be read, or does not validate, is an error (ValueError, RosterInvalid): a
    load computed without it would pass for one computed with it."""
    if option:
        try:
            raw = Path(option).read_bytes()
        except OSError as err:
            raise ValueError(f"--roster {option}: {err.strerror}") from None
        return RosterChoice(parse_roster(raw, option), option)
    if default is None:
        from leadflow.settings import Settings

        default = Settings.from_env().roster_file
    if not default.is_file():
        return RosterChoice(None, None, f"no roster file ({default} not found; --roster FILE names one)")
    return RosterChoice(parse_roster(default.read_bytes(), str(default)), str(default))


def section(results: Sequence[Mapping[str, Any]], choice: RosterChoice) -> Section:
    """One simulation's routing, JSON-ready: keys "rep week" and "queue week", as summary()'s."""
    tasks = tasks_of(results)
    roster = choice.roster
    if roster is None:
        per_queue = Counter((t.queue, week_of(t.opened)) for t in tasks)
        return {"roster": None, "note": choice.note, "handoffs_per_week": _flat(per_queue, _by_name)}
    load = replay(tasks, roster)
    per_rep = Counter(a.rep for a in load.assignments if a.rep is not None)
    return {"roster": choice.file,
            "reps": {r.id: {"queues": r.queues, "capacity": r.capacity} for r in roster.reps},
            "handoffs": len(tasks),
            "assigned_per_week": _flat(load.assigned, _by_rep(roster)),
            "assigned": {r.id: per_rep[r.id] for r in roster.reps},
            "waited_per_week": _flat(load.waited, _by_name),
            "waited": sum(load.waited.values()),
            "unstaffed_per_week": _flat(load.unstaffed, _by_name),
            "unstaffed": sum(load.unstaffed.values()),
            "waiting_at_end": load.waiting_at_end,
            "open_at_end": load.open_at_end}


def compare_sections(old_results: Sequence[Mapping[str, Any]], new_results: Sequence[Mapping[str, Any]],
                     choice: RosterChoice) -> Section:
    """Two simulations' routing side by side, each figure as {"old", "new", "change"}."""
    old, new = section(old_results, choice), section(new_results, choice)
    if choice.roster is None:
        return {"roster": None, "note": choice.note,
                "handoffs_per_week": _sides(old["handoffs_per_week"], new["handoffs_per_week"], _by_name)}
    by_rep = _by_rep(choice.roster)
    out: Section = {"roster": choice.file, "reps": old["reps"]}
    out["assigned_per_week"] = _sides(old["assigned_per_week"], new["assigned_per_week"], by_rep)
    out["assigned"] = _sides(old["assigned"], new["assigned"], by_rep, keep_zero=True)
    for key in ("waited_per_week", "unstaffed_per_week"):
        out[key] = _sides(old[key], new[key], _by_name)
    for key in ("handoffs", "waited", "unstaffed", "waiting_at_end"):
        out[key] = _side(old[key], new[key])
    return out


def table(routing: Section) -> str:
    """`policy simulate`'s lines."""
    if routing["roster"] is None:
        out = [f"sales load per rep per week: {routing['note']}; hand-offs per queue per week instead"]
        return "\n".join(out + _rows(routing["handoffs_per_week"]))
    out = [f"sales load per rep per week (roster {routing['roster']}: the tasks each rep took)"]
    out += _rows(routing["assigned_per_week"])
    out.append("  in all: " + ", ".join(f"{rep} {n}" for rep, n in routing["assigned"].items()))
    if routing["waited_per_week"]:
        out += ["", "hand-offs that waited for a free rep, per queue per week"]
        out += _rows(routing["waited_per_week"])
    if routing["unstaffed_per_week"]:
        out += ["", "hand-offs to a queue no rep works, per queue per week"]
        out += _rows(routing["unstaffed_per_week"])
    if routing["waiting_at_end"]:
        out += ["", f"still waiting for a rep at the end: {routing['waiting_at_end']}"]
    return "\n".join(out)


def diff_table(routing: Section) -> str:
    """`policy diff`'s lines: each version's figure and the change."""
    head = f"  {'':<30} {'old':>5}  {'new':>5}  {'change':>6}"
    if routing["roster"] is None:
        out = [f"sales load per rep per week: {routing['note']}; hand-offs per queue per week instead", head]
        return "\n".join(out + _side_rows(routing["handoffs_per_week"]))
    out = [f"sales load per rep per week (roster {routing['roster']}: the tasks each rep took)", head]
    out += _side_rows(routing["assigned_per_week"])
    out += _side_rows({f"{rep} in all": n for rep, n in routing["assigned"].items()})
    for key, title in (("waited_per_week", "hand-offs that waited for a free rep, per queue per week"),
                       ("unstaffed_per_week", "hand-offs to a queue no rep works, per queue per week")):
        if routing[key]:
            out += ["", title, head] + _side_rows(routing[key])
    end = routing["waiting_at_end"]
    if end["old"] or end["new"]:
        out += ["", f"still waiting for a rep at the end: {end['old']} -> {end['new']} ({end['change']:+d})"]
    return "\n".join(out)


def _rows(figures: Mapping[str, int]) -> list[str]:
    return [f"  {key:<32} {n:>6}" for key, n in figures.items()] or ["  (none)"]


def _side_rows(figures: Mapping[str, Mapping[str, int]]) -> list[str]:
    return [f"  {key:<30} {n['old']:>5}  {n['new']:>5}  {n['change']:>+6}"
            for key, n in figures.items()] or ["  (none)"]


Order = Callable[[str], Any]


def _by_name(key: str) -> Any:
    return key


def _by_rep(roster: Roster) -> Order:
    """Reps in roster order (as the round robin sees them), each rep's weeks in time order."""
    place = {rep.id: n for n, rep in enumerate(roster.reps)}

    def order(key: str) -> Any:
        rep, _, week = key.partition(" ")
        return place.get(rep, len(place)), rep, week

    return order


def _flat(counts: Counter[tuple[str, str]], order: Order) -> dict[str, int]:
    return {key: counts[pair] for key, pair in sorted(((f"{a} {b}", (a, b)) for a, b in counts),
                                                       key=lambda item: order(item[0]))}


def _side(old: int, new: int) -> dict[str, int]:
    return {"old": old, "new": new, "change": new - old}


def _sides(old: Mapping[str, int], new: Mapping[str, int], order: Order, keep_zero: bool = False
           ) -> dict[str, dict[str, int]]:
    keys = sorted(set(old) | set(new), key=order)
    return {k: _side(old.get(k, 0), new.get(k, 0)) for k in keys if keep_zero or old.get(k) or new.get(k)}


__all__ = ["RosterChoice", "choose_roster", "compare_sections", "diff_table", "section", "table"]
