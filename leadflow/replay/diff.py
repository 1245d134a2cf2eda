"""Two policy versions on the same history: which leads end differently and why, and what the
change does to the sales load and to the time to sales-ready. A table for the terminal, JSON for
machines, and an HTML page with its charts inside, to send to the other team."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadflow.replay.routing_report import RosterChoice, compare_sections, diff_table
from leadflow.replay.simulate import people, per_variant, simulate_lead, summary
from leadflow.reports.charts import img, png, pyplot
from rules.compile import CompiledPolicy, load_compiled
from rules.simulate import simulate_people

MAX_EXPLAINED = 200  # changed leads explained event by event (the rest are counted)


@dataclass
class Parting:
    """Where one lead's two runs parted: the first event they took differently."""

    lead_id: str
    email: str | None
    old_state: str | None
    new_state: str | None
    event_id: str | None
    event_type: str | None
    at: str | None
    old_fired: list[str]
    new_fired: list[str]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


Result = dict[str, Any]


def changed(old: list[Result], new: list[Result]) -> list[tuple[Result, Result]]:
    """The leads whose runs differ: final state, transitions or hand-offs."""
    pairs = []
    for a, b in zip(old, new, strict=True):
        if (a["state"], a["transitions"], _handoffs(a)) != (b["state"], b["transitions"], _handoffs(b)):
            pairs.append((a, b))
    return pairs


def _handoffs(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(h["queue"], h["at"]) for h in result["handoffs"]]


def parting(old: CompiledPolicy, new: CompiledPolicy, lead_id: str, group: dict[str, list[dict[str, Any]]],
            until: datetime | None) -> Parting:
    """Run the lead again under both versions, step by step, to the first step that differs.
    `group`: its events, with those of the leads it merged with (leadflow.replay.simulate.people)."""
    if len(group) == 1:
        a = simulate_lead(old, lead_id, group[lead_id], until, trace=True)
        b = simulate_lead(new, lead_id, group[lead_id], until, trace=True)
    else:
        a = simulate_people(old, group, until, trace=True)[lead_id]
        b = simulate_people(new, group, until, trace=True)[lead_id]
    for x, y in zip(a.steps, b.steps, strict=False):
        if (x["state"], x["fired"], x["event_id"]) != (y["state"], y["fired"], y["event_id"]):
            first = x if x["at"] <= y["at"] else y
            return Parting(lead_id, a.email, a.state, b.state, first["event_id"], first["event_type"],
                           first["at"], _only(x["fired"], y["fired"]), _only(y["fired"], x["fired"]))
    longer = a.steps[len(b.steps):] or b.steps[len(a.steps):]
    first = longer[0] if longer else {"event_id": None, "event_type": None, "at": None}
    return Parting(lead_id, a.email, a.state, b.state, first["event_id"], first["event_type"], first["at"],
                   [], [])


def _only(these: list[str], others: list[str]) -> list[str]:
    left = Counter(others)
    out = []
    for rule in these:
        if left[rule]:
            left[rule] -= 1
        else:
            out.append(rule)
    return out


def compare(old_file: str, new_file: str, leads: dict[str, list[dict[str, Any]]],
            old: list[Result], new: list[Result], until: datetime | None,
            roster: RosterChoice | None = None) -> dict[str, Any]:
    """The comparison as one JSON-ready object; with `roster` (even one that found no file), the
    sales load per rep per week of both versions under `routing`."""
    pairs = changed(old, new)
    partings = []
    if pairs:
        po, pn = load_compiled(old_file), load_compiled(new_file)
        groups = {lead_id: group for group in people(leads) for lead_id in group}
        for a, _ in pairs[:MAX_EXPLAINED]:
            partings.append(parting(po, pn, a["lead_id"], groups[a["lead_id"]], until).as_dict())
    report = compared(old_file, new_file, old, new, partings)
    if roster is not None:
        report["routing"] = compare_sections(old, new, roster)
    return report


def compared(old_label: str, new_label: str, old: list[Result], new: list[Result],
             partings: list[dict[str, Any]]) -> dict[str, Any]:
    """Two runs of the same leads side by side (a diff's, or the live and shadow Decisions)."""
    pairs = changed(old, new)
    moves = Counter(f"{a['state']} -> {b['state']}" for a, b in pairs)
    so, sn = summary(old), summary(new)
    weeks = sorted(set(so["handoffs_per_week"]) | set(sn["handoffs_per_week"]))
    load = {w: {"old": so["handoffs_per_week"].get(w, 0), "new": sn["handoffs_per_week"].get(w, 0)}
            for w in weeks}
    return {"old": {"file": old_label, **so}, "new": {"file": new_label, **sn}, "leads": len(old),
            "changed": len(pairs), "ended_differently": sum(1 for a, b in pairs if a["state"] != b["state"]),
            "moves": dict(moves.most_common()), "handoffs_per_week": load,
            "handoffs_change": sn["handoffs"] - so["handoffs"],
            "median_days_to_sales_ready": {"old": so["median_days_to_sales_ready"],
                                           "new": sn["median_days_to_sales_ready"]},
            "partings": partings, "explained": len(partings)}


def table(report: dict[str, Any]) -> str:
    out = [f"{report['leads']} leads; {report['changed']} run differently, {report['ended_differently']} end "
           f"in another state ({report['old']['file']} -> {report['new']['file']})", "",
           "old state -> new state      leads"]
    out += [f"  {move:<26} {n:>6}" for move, n in report["moves"].items()] or ["  (none)"]
    out += ["", "hand-offs per queue per week      old    new   change"]
    for week, n in report["handoffs_per_week"].items():
        out.append(f"  {week:<30} {n['old']:>5}  {n['new']:>5}  {n['new'] - n['old']:>+6}")
    t = report["median_days_to_sales_ready"]
    out += ["", f"hand-offs in all: {report['old']['handoffs']} -> {report['new']['handoffs']} "
                f"({report['handoffs_change']:+d}); median days to sales-ready: {t['old']} -> {t['new']}"]
    old_ab, new_ab = report["old"].get("ab_sends", {}), report["new"].get("ab_sends", {})
    for test in sorted({*old_ab, *new_ab}):
        out.append(f"A/B test {test}, e-mails sent per variant: {per_variant(old_ab.get(test, {}))} -> "
                   f"{per_variant(new_ab.get(test, {}))}")
    if "routing" in report:
        out += ["", diff_table(report["routing"])]
    if report["partings"]:
        out += ["", "where they parted (the first event taken differently; rules that fired only in "
                    "old | only in new)"]
        for p in report["partings"][:50]:
            who = p["email"] or p["lead_id"]
            only_old, only_new = ", ".join(p["old_fired"]) or "-", ", ".join(p["new_fired"]) or "-"
            out.append(f"  {who}: {p['old_state']} -> {p['new_state']} at {p['event_type']} {p['event_id']} "
                       f"({p['at']}): {only_old} | {only_new}")
        if report["changed"] > len(report["partings"][:50]):
            out.append(f"  ... {report['changed'] - len(report['partings'][:50])} more (--json has "
                       f"{report['explained']})")
    return "\n".join(out)


def html_report(report: dict[str, Any]) -> str:
    """One page, charts inside as PNG: it can be mailed as it is."""
    plt = pyplot()

    states = sorted(set(report["old"]["states"]) | set(report["new"]["states"]), key=str)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    xs = range(len(states))
    ax.bar([x - 0.2 for x in xs], [report["old"]["states"].get(s, 0) for s in states], 0.4, label="old")
    ax.bar([x + 0.2 for x in xs], [report["new"]["states"].get(s, 0) for s in states], 0.4, label="new")
    ax.set_xticks(list(xs), [str(s) for s in states])
    ax.set_ylabel("leads")
    ax.set_title("Final state")
    ax.legend()
    chart_states = img("final states", png(fig))

    load = report["handoffs_per_week"]
    weeks = list(load)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for side in ("old", "new"):
        ax.plot(range(len(weeks)), [load[w][side] for w in weeks], marker="o", label=side)
    ax.set_xticks(list(range(len(weeks))), weeks, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("hand-offs")
    ax.set_title("Sales load: hand-offs per queue per week")
    ax.legend()
    chart_load = img("hand-offs per week", png(fig))

    e = html.escape
    rows = "".join(f"<tr><td>{e(m)}</td><td>{n}</td></tr>" for m, n in report["moves"].items())
    parted = "".join(
        f"<tr><td>{e(p['email'] or p['lead_id'])}</td>"
        f"<td>{e(str(p['old_state']))} &rarr; {e(str(p['new_state']))}</td>"
        f"<td>{e(str(p['event_type']))} <code>{e(str(p['event_id']))}</code><br>"
        f"<small>{e(str(p['at']))}</small></td>"
        f"<td>{e(', '.join(p['old_fired']) or '-')}</td><td>{e(', '.join(p['new_fired']) or '-')}</td></tr>"
        for p in report["partings"])
    t = report["median_days_to_sales_ready"]
    old, new = report["old"], report["new"]
    routing = _html_routing(report["routing"]) if "routing" in report else ""
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Policy change: what it would have done</title>
<style>body{{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}
img{{max-width:100%}}</style></head><body>
<h1>Policy change: what it would have done</h1>
<p><b>{e(old['file'])}</b> &rarr; <b>{e(new['file'])}</b> on the same history of {report['leads']}
leads: <b>{report['changed']}</b> run differently, {report['ended_differently']} end in another state.
Hand-offs {old['handoffs']} &rarr; {new['handoffs']}
({report['handoffs_change']:+d}); median days from sign-up to sales-ready {t['old']} &rarr; {t['new']}.</p>
<h2>Leads that run differently</h2>
<table><tr><th>old &rarr; new state</th><th>leads</th></tr>{rows}</table>
{chart_states}
{chart_load}
{routing}
<h2>Where each changed lead parted</h2>
<table><tr><th>lead</th><th>state</th><th>first event taken differently</th><th>fired only in old</th>
<th>fired only in new</th></tr>{parted}</table>
</body></html>
"""


def _html_routing(routing: dict[str, Any]) -> str:
    e = html.escape
    if routing["roster"] is None:
        rows, what = routing["handoffs_per_week"], "hand-offs per queue per week"
        lead = f"<p>{e(routing['note'])}: {what} instead.</p>"
    else:
        rows, what = routing["assigned_per_week"], "tasks each rep took per week"
        lead = f"<p>Roster <code>{e(routing['roster'])}</code>: the {what}.</p>"
    body = "".join(f"<tr><td>{e(k)}</td><td>{n['old']}</td><td>{n['new']}</td><td>{n['change']:+d}</td></tr>"
                   for k, n in rows.items())
    return (f"<h2>Sales load per rep per week</h2>{lead}"
            f"<table><tr><th></th><th>old</th><th>new</th><th>change</th></tr>{body}</table>")
