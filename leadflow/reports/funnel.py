"""The funnel, from the live system and imported history: how many leads reach each state, how
long they stay in each stage (median and p90), how many were won and lost, why sales sent leads
back and why leads were disqualified, per policy version, per week and per lead source.

Read from the shared database: the state changes every live Decision made (`transitions`) and
the event archive (each lead's sign-up says its source; sales rejections say their reason; an
`outcome` label says won or lost). A lead belongs to the week it was captured in and to the
version that captured it. A lead of imported history (`leadflow import`: archived events, no state
change) was captured at its sign-up, belongs to the group `imported` by version, and was won or
lost as its outcome label says.

Won and lost: a lead's outcome label when it has one (the CRM knew), else a live lead was won when
it reached `converted` and lost when it ended `disqualified` or sales sent it back and it has not
converted since. `rate` is won / leads (the source's lead-to-customer rate); `win_rate` is won /
(won + lost), of the leads that closed either way."""

from __future__ import annotations

import html
import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select

from leadflow.db.database import Database
from leadflow.db.schema import events, transitions
from leadflow.reports.charts import from_zero, imgs, png, pyplot
from rules.models import OUTCOME, OUTCOMES

MAIN_PATH = ("captured", "scored", "nurturing", "sales-ready", "converted")
By = Literal["version", "week", "source"]
IMPORTED = 0  # the version of a lead that no policy captured: imported history


@dataclass
class LeadPath:
    lead: str
    captured_at: float
    version: int
    source: str = "unknown"
    moves: list[tuple[float, str, str, str, str]] = field(default_factory=list)  # at, from, to, rule, why
    rejections: list[str] = field(default_factory=list)
    outcome: str | None = None  # the latest outcome label (won | lost), if any
    outcome_at: float = float("-inf")

    @property
    def won(self) -> bool:
        return self.outcome == "won" if self.outcome else "converted" in self.reached()

    @property
    def lost(self) -> bool:
        if self.outcome:
            return self.outcome == "lost"
        ended = self.moves[-1][2] if self.moves else "captured"
        return ended == "disqualified" or (bool(self.rejections) and ended != "converted")

    def group(self, by: By) -> str:
        if by == "source":
            return self.source
        if by == "week":
            return self.week
        return "imported" if self.version == IMPORTED else f"v{self.version}"

    @property
    def week(self) -> str:
        year, week, _ = datetime.fromtimestamp(self.captured_at, timezone.utc).isocalendar()
        return f"{year}-W{week:02d}"

    def reached(self) -> set[str]:
        return {"captured", *(to for _, _, to, _, _ in self.moves)}

    def stays(self) -> list[tuple[str, float]]:
        """(state, seconds) for each stay that ended; the current one has not."""
        out = []
        entered, state = self.captured_at, "captured"
        for at, _, to, _, _ in self.moves:
            out.append((state, at - entered))
            entered, state = at, to
        return out


def load(ledger: Database, since: datetime | None = None, until: datetime | None = None) -> list[LeadPath]:
    """The leads captured from `since` to before `until`, with their moves, rejections and
    outcome labels; leads of imported history (a sign-up archived, no state change) too."""
    t, e = transitions.c, events.c
    paths: dict[str, LeadPath] = {}
    with ledger.engine.connect() as db:
        for row in db.execute(select(t.lead, t.at, t.from_state, t.to_state, t.rule, t.version, t.why)
                              .order_by(t.lead, t.at, t.seq)):
            path = paths.get(row.lead)
            if path is None:
                path = paths[row.lead] = LeadPath(row.lead, row.at, row.version)
            path.moves.append((row.at, row.from_state, row.to_state, row.rule, row.why))
        query = select(e.lead, e.type, e.at, e.body).where(e.type.in_(("signup", "sales_reject", OUTCOME)))
        unsigned: list[str] = []  # history with an outcome but no sign-up (a CRM's log of events)
        for taken in db.execute(query.order_by(e.taken_at, e.seq)):
            path = paths.get(taken.lead)
            if path is None:
                if taken.type == "sales_reject":
                    continue
                path = paths[taken.lead] = LeadPath(taken.lead, taken.at, IMPORTED)  # history, never live
                if taken.type == OUTCOME:
                    unsigned.append(taken.lead)
            _read(path, taken.type, taken.at, json.loads(taken.body))
        if unsigned:  # captured when its history begins
            first = select(e.lead, func.min(e.at)).where(e.lead.in_(unsigned)).group_by(e.lead)
            for lead, at in db.execute(first):
                paths[lead].captured_at = min(paths[lead].captured_at, at)
    wanted = [p for p in paths.values() if (since is None or p.captured_at >= since.timestamp())
              and (until is None or p.captured_at < until.timestamp())]
    return sorted(wanted, key=lambda p: p.captured_at)


def _read(path: LeadPath, kind: str, at: float, body: dict[str, Any]) -> None:
    """What an archived sign-up, sales rejection or outcome label says of its lead."""
    data = body.get("data") or {}
    if kind == "signup" and path.source == "unknown":
        source = data.get("source") or (body.get("lead") or {}).get("source")
        if isinstance(source, str) and source.strip():
            path.source = " ".join(source.split()).casefold()
    elif kind == "sales_reject":
        reason = data.get("reason")
        path.rejections.append(str(reason).strip() if reason else "(no reason given)")
    elif kind == OUTCOME and data.get("outcome") in OUTCOMES and at >= path.outcome_at:
        path.outcome, path.outcome_at = data["outcome"], at


def _states(paths: list[LeadPath]) -> list[str]:
    seen = {"captured", *(s for p in paths for s in p.reached())}
    return [s for s in MAIN_PATH if s in seen] + sorted(seen - set(MAIN_PATH))


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None, "stays": 0}
    days = sorted(v / 86400 for v in values)
    p90 = days[min(len(days) - 1, int(round(0.9 * (len(days) - 1))))]
    return {"median": round(statistics.median(days), 2), "p90": round(p90, 2), "stays": len(days)}


def _group(paths: list[LeadPath], states: list[str]) -> dict[str, Any]:
    reached = Counter(s for p in paths for s in p.reached())
    captured = len(paths)
    main = [s for s in MAIN_PATH if s in states]
    steps = {f"{a} -> {b}": (round(reached[b] / reached[a], 4) if reached[a] else None)
             for a, b in zip(main, main[1:], strict=False)}
    to_ready = [next(at for at, _, to, _, _ in p.moves if to == "sales-ready") - p.captured_at
                for p in paths if "sales-ready" in p.reached()]
    won, lost = sum(p.won for p in paths), sum(p.lost for p in paths)
    return {"leads": captured, "won": won, "lost": lost,
            "rate": round(won / captured, 4) if captured else None,
            "win_rate": round(won / (won + lost), 4) if won + lost else None,
            "reached": {s: reached.get(s, 0) for s in states},
            "share_of_captured": {s: round(reached.get(s, 0) / captured, 4) if captured else 0.0
                                  for s in states},
            "conversion": steps, "days_to_sales_ready": _quantiles(to_ready)}


def funnel(paths: list[LeadPath], by: By = "version") -> dict[str, Any]:
    """The report as one JSON-ready object (pure: `load` reads, this counts)."""
    states = _states(paths)
    stays: dict[str, list[float]] = defaultdict(list)
    for p in paths:
        for state, seconds in p.stays():
            stays[state].append(seconds)
    disqualified = Counter(why or rule for p in paths for _, _, to, rule, why in p.moves
                           if to == "disqualified")
    groups: dict[str, list[LeadPath]] = defaultdict(list)
    sources: dict[str, list[LeadPath]] = defaultdict(list)
    for p in paths:
        groups[p.group(by)].append(p)
        sources[p.source].append(p)
    return {"leads": len(paths), "states": states, "overall": _group(paths, states),
            "time_in_stage_days": {s: _quantiles(stays.get(s, [])) for s in states if s in stays},
            "rejection_reasons": dict(Counter(r for p in paths for r in p.rejections).most_common()),
            "disqualification_reasons": dict(disqualified.most_common()),
            "by": by, "groups": {k: _group(v, states) for k, v in sorted(
                groups.items(), key=lambda kv: (-len(kv[1]), kv[0]) if by == "source" else (0, kv[0]))},
            "sources": {k: _group(v, states) for k, v in sorted(sources.items(),
                                                               key=lambda kv: -len(kv[1]))}}


def table(r: dict[str, Any]) -> str:
    if not r["leads"]:
        return "no lead captured in that window yet"
    states = r["states"]
    out = [f"{r['leads']} leads", "", "state            reached   of captured   step conversion"]
    conv = r["overall"]["conversion"]
    previous = None
    for s in states:
        step = conv.get(f"{previous} -> {s}") if previous else None
        share = r["overall"]["share_of_captured"][s]
        out.append(f"  {s:<15} {r['overall']['reached'][s]:>7}   {share:>10.1%}"
                   f"   {'' if step is None else f'{step:.1%}'}")
        previous = s if s in MAIN_PATH else previous
    if stages_measured(r):
        out += ["", "time in stage (days)     median      p90   stays ended"]
        for s, q in r["time_in_stage_days"].items():
            out.append(f"  {s:<22} {_num(q['median']):>7}  {_num(q['p90']):>7}  {q['stays']:>12}")
    else:
        out += ["", f"time in stage (days): {NOT_ENOUGH}"]
    sections = [(f"per {r['by']}", "groups")]
    if r["by"] != "source":  # else the groups are the sources
        sections.append(("per lead source", "sources"))
    for title, key in sections:
        out += ["", f"{title:<22} leads  sales-ready  converted    won   lost    rate  win rate"
                    "  median days to sales-ready"]
        for name, g in r[key].items():
            out.append(f"  {name:<20} {g['leads']:>5}  {g['share_of_captured'].get('sales-ready', 0):>10.1%}"
                       f"  {g['share_of_captured'].get('converted', 0):>9.1%}"
                       f"  {g['won']:>5}  {g['lost']:>5}  {_share(g['rate']):>6}  {_share(g['win_rate']):>8}"
                       f"  {_num(g['days_to_sales_ready']['median']):>8}")
    for title, key in (("why sales sent leads back", "rejection_reasons"),
                       ("why leads were disqualified", "disqualification_reasons")):
        out += ["", title]
        out += [f"  {n:>5}  {why}" for why, n in r[key].items()] or ["  (none)"]
    return "\n".join(out)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


NOT_ENOUGH = "not enough data yet (no lead has left a stage after time in it)"


def stages_measured(r: dict[str, Any]) -> bool:
    """Whether some lead left a stage after a time that shows (in hundredths of a day): before
    that, a chart of the time in each stage is bars of nothing."""
    return any((q["median"] or 0) > 0 or (q["p90"] or 0) > 0 for q in r["time_in_stage_days"].values())


def charts(r: dict[str, Any]) -> dict[str, bytes]:
    """PNG charts by file name."""
    plt = pyplot()

    out: dict[str, bytes] = {}
    states = r["states"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(list(reversed(states)), [r["overall"]["reached"][s] for s in reversed(states)], color="#3a6ea5")
    ax.set_xlabel("leads that reached the state")
    ax.set_title("Funnel")
    out["funnel.png"] = png(fig)

    if stages_measured(r):  # else the page says there is not enough data yet
        stages = list(r["time_in_stage_days"])
        fig, ax = plt.subplots(figsize=(7, 3.2))
        xs = range(len(stages))
        medians = [r["time_in_stage_days"][s]["median"] or 0 for s in stages]
        p90s = [r["time_in_stage_days"][s]["p90"] or 0 for s in stages]
        ax.bar([x - 0.2 for x in xs], medians, 0.4, label="median")
        ax.bar([x + 0.2 for x in xs], p90s, 0.4, label="p90")
        ax.set_xticks(list(xs), stages)
        from_zero(ax, medians + p90s)
        ax.set_ylabel("days")
        ax.set_title("Time in each stage")
        ax.legend()
        out["stages.png"] = png(fig)

    for key, name, title in (("groups", "groups.png", f"Per {r['by']}"), ("sources", "sources.png",
                                                                          "Per lead source")):
        names = list(r[key])
        fig, ax = plt.subplots(figsize=(7, 3.2))
        xs = range(len(names))
        drawn: list[float] = []
        for offset, state in ((-0.2, "sales-ready"), (0.2, "converted")):
            shares = [100 * r[key][n]["share_of_captured"].get(state, 0) for n in names]
            ax.bar([x + offset for x in xs], shares, 0.4, label=state)
            drawn += shares
        from_zero(ax, drawn)
        ax.set_xticks(list(xs), names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6
                      else "center", fontsize=8)
        ax.set_ylabel("% of captured")
        ax.set_title(title)
        ax.legend()
        out[name] = png(fig)
    return out


def html_page(r: dict[str, Any], images: dict[str, bytes] | None = None) -> str:
    """One page with its charts inside (PNG as data URLs): it can be mailed as it is."""
    images = images if images is not None else (charts(r) if r["leads"] else {})
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>leadflow funnel</title>
<style>body{{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}}
img{{max-width:100%}} pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>
{body(r, images)}
</body></html>
"""


def body(r: dict[str, Any], images: dict[str, bytes]) -> str:
    """The report's HTML without the page around it (the ops page puts its own around it)."""
    return f"""<h1>Funnel</h1>
<p>{r['leads']} leads, from the live system: conversion between states, time in each stage, per
{html.escape(r['by'])} and per lead source, and why sales sent leads back.</p>
<div class="charts">{imgs(images)}</div>{_no_stage_chart(r, images)}
<pre class="funnel-table">{html.escape(table(r))}</pre>"""


def _no_stage_chart(r: dict[str, Any], images: dict[str, bytes]) -> str:
    if not r["leads"] or not images or "stages.png" in images:
        return ""
    return f'\n<p class="no-data">Time in each stage: {html.escape(NOT_ENOUGH)}.</p>'


def write(r: dict[str, Any], out: Path) -> list[Path]:
    """funnel.html, the charts as PNG files beside it, and funnel.json."""
    out.mkdir(parents=True, exist_ok=True)
    images = charts(r) if r["leads"] else {}
    written = []
    for name, data in images.items():
        (out / name).write_bytes(data)
        written.append(out / name)
    (out / "funnel.html").write_text(html_page(r, images), encoding="utf-8")
    (out / "funnel.json").write_text(json.dumps(r, indent=1), encoding="utf-8")
    return [out / "funnel.html", out / "funnel.json", *written]
