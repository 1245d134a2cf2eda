"""`leadflow policy suggest`: criteria learned from the paths that led to a sale, for people to
own. It reads histories with their outcomes (the policy's own simulation of the log says who
converted, who sales sent back and why, who derailed and who still nurtures), measures which
events, content and ordered pairs of steps came before a sale more often than not among the
leads whose outcome is known (sales answered their hand-off, or the history's CRM says won or
lost: `won`), with counts, lift and how sure the numbers are at that sample size, and writes a
proposed next version of the policy with changed points and thresholds. Nothing is activated by
it: the file goes through `policy propose` and both teams' approval like any other.

The statistics, plainly:
- a feature's lift is the win rate of leads who had it over that of leads who did not;
- the 95% interval of its sale rate is Wilson's; "sure" means at least `min_leads` leads on each
  side and a two-proportion z-test p below 0.01;
- a threshold is moved only upwards, to the value that best separates the hand-offs of leads won
  from those of leads lost or sent back (Youden's J), when the split is as sure as a finding
  (`min_leads` hand-offs on each side, p below 0.01): leads below today's threshold were never
  handed over, so the history cannot say what lowering it would do."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from leadflow.reports.proportions import Rate, p_value, wilson
from rules.compile import CompiledPolicy
from rules.models import OUTCOME
from rules.policy import EngagementRule
from rules.validate import LoadedPolicy, PolicyInvalid, load_policy_bytes

# what the lead did not do itself (the outcome is the label, never a feature)
SKIP = frozenset({"signup", "sales_accept", "sales_reject", "check", "sla_breach", OUTCOME})
ANSWERS = frozenset({"sales_accept", "sales_reject", OUTCOME})
DETAILS = ("content", "asset", "webinar", "form")
PAIR_WINDOW = "90d"


def section(path: str) -> str:
    """/pricing/enterprise -> /pricing: the part of a site a page belongs to."""
    parts = [p for p in str(path).split("/") if p]
    return f"/{parts[0]}" if parts else "/"


def step(raw: dict[str, Any]) -> str:
    """An event as one step of a path (pairs are made of these)."""
    if raw["type"] == "page_view":
        return f"page_view {section((raw.get('data') or {}).get('path', '/'))}"
    return str(raw["type"])


def features(raws: list[dict[str, Any]]) -> set[str]:
    """What a lead did: event types, the content and site sections they met, and ordered pairs
    of steps ("A -> B": some A came before some B)."""
    out: set[str] = set()
    seen: list[str] = []
    for raw in raws:
        kind = raw["type"]
        if kind in SKIP:
            continue
        out.add(kind)
        data = raw.get("data") or {}
        for key in DETAILS:
            if isinstance(data.get(key), str):
                out.add(f"{kind} {data[key]}")
        b = step(raw)
        out.add(b)
        for a in seen:
            if a != b:
                out.add(f"{a} -> {b}")
        if b not in seen:
            seen.append(b)
    return out


@dataclass
class Finding:
    feature: str
    leads: int
    sales: int
    rate: float
    rate_without: float
    lift: float | None
    interval: tuple[float, float]
    p: float
    sure: bool

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "leads": self.leads, "sales": self.sales,
                "rate": round(self.rate, 4), "rate_without": round(self.rate_without, 4),
                "lift": None if self.lift is None else round(self.lift, 2),
                "rate_95": [round(x, 4) for x in self.interval], "p": float(f"{self.p:.3g}"),
                "sure": self.sure}


def outcome(result: dict[str, Any]) -> str:
    # a lead that converted, ended and came back as a new run converted all the same
    if result["state"] == "converted" or any(h.get("answer") == "accepted" for h in result["handoffs"]):
        return "converted"
    if any(h.get("answer") == "rejected" for h in result["handoffs"]):
        return "rejected"
    # a CRM may label a person whose history holds nothing the policy evaluates
    return str(result["state"] or "never evaluated")


def won(result: dict[str, Any]) -> bool | None:
    """Whether the lead was won: what the history's CRM says when it says it (a deal sales
    accepted can still be lost, and a lead never handed over can be won elsewhere), else whether
    sales accepted it in the simulation (converted) or sent it back; None: not known."""
    label = result.get("outcome")
    if label == "won":
        return True
    if label == "lost":
        return False
    told = outcome(result)
    return True if told == "converted" else False if told == "rejected" else None


def before_answer(raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A lead's events before sales answered or its outcome was written: what a criterion may
    read (what came after is the answer, not a reason for it)."""
    cut = next((i for i, raw in enumerate(raws) if raw["type"] in ANSWERS), len(raws))
    return raws[:cut]


def measure(leads: dict[str, list[dict[str, Any]]], results: list[dict[str, Any]],
            min_leads: int = 30) -> tuple[list[Finding], dict[str, Any]]:
    """Findings, most telling first, and the outcomes they were measured against."""
    outcomes = Counter(outcome(r) for r in results)
    reasons = Counter(str((raw.get("data") or {}).get("reason", "(none)"))
                      for r in results if outcome(r) == "rejected"
                      for raw in leads[r["lead_id"]] if raw["type"] == "sales_reject")
    # the leads whose outcome is known: those sales answered asked for sales or qualified, so what
    # sets the sales apart is their path, not the hand-raise every sale needs; a CRM's outcomes
    # come with no hand-off, and there every labelled lead tells
    labelled = [(r, sold) for r in results if (sold := won(r)) is not None]
    total = len(labelled)
    having: Counter[str] = Counter()
    selling: Counter[str] = Counter()
    sales = 0
    for r, sold in labelled:
        sales += sold
        for f in features(before_answer(leads[r["lead_id"]])):
            having[f] += 1
            if sold:
                selling[f] += 1
    found = []
    for f, n in having.items():
        a = selling[f]
        m, b = total - n, sales - a
        rate, without = a / n, (b / m if m else 0.0)
        lift = rate / without if without > 0 else None
        p = p_value(Rate(a, n), Rate(b, m))
        found.append(Finding(f, n, a, rate, without, lift, wilson(a, n), p,
                             n >= min_leads and m >= min_leads and p < 0.01))
    # the name last: the same history gives the same order whatever order its leads came in
    found.sort(key=lambda x: (not x.sure, -(x.lift if x.lift is not None else 1e9), -x.leads, x.feature))
    answered = sum(1 for r in results if outcome(r) in ("converted", "rejected"))
    labels = sum(1 for r in results if r.get("outcome") in ("won", "lost"))
    return found, {"leads": len(results), "known": total, "won": sales, "answered": answered,
                   "labelled": labels,
                   "outcomes": dict(outcomes.most_common()), "rejection_reasons": dict(reasons.most_common()),
                   "win_rate": round(sales / total, 4) if total else None}


# -- the proposal ----------------------------------------------------------------------------

@dataclass
class Proposal:
    text: str
    version: int
    changes: list[str] = field(default_factory=list)


def _rule_for(rules: list[EngagementRule], token: str) -> tuple[int, EngagementRule] | None:
    """The engagement rule that scores a step ("page_view /pricing" or an event type)."""
    kind, _, where = token.partition(" ")
    for i, rule in enumerate(rules):
        if kind not in rule.event_types:
            continue
        path = rule.when.get("event.path")
        prefix = path.get("prefix") if isinstance(path, dict) else None
        if where and prefix and section(prefix) == where:
            return i, rule
        if not where and not rule.when:
            return i, rule
    return None


def _qualify(loaded: LoadedPolicy) -> tuple[int, dict[str, float]] | None:
    """The rule that hands leads to sales, and its score thresholds."""
    for i, rule in enumerate(loaded.policy.rules):
        effects = rule.then
        if getattr(effects, "transition", None) == "sales-ready" and getattr(effects, "handoff", None):
            limits = {k.split(".")[1]: float(v["gte"]) for k, v in rule.when.items()
                      if k in ("score.fit", "score.intent") and isinstance(v, dict) and "gte" in v}
            return i, limits
    return None


def answered_handoffs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The lead's hand-offs, each with sales' answer; one sales did not answer (a CRM's history
    has outcomes, not answers) takes the lead's outcome: won as accepted, lost as rejected."""
    label = result.get("outcome")
    told = {"won": "accepted", "lost": "rejected"}.get(label) if isinstance(label, str) else None
    if told is None:
        return list(result["handoffs"])
    return [h if h.get("answer") else {**h, "answer": told} for h in result["handoffs"]]


class Cut(NamedTuple):
    threshold: float
    j: float  # Youden's J: TPR - FPR
    p: float  # two-proportion p of the acceptance rates at or above the threshold and below it
    above: int  # answered hand-offs at or above it
    below: int


def youden(handoffs: list[dict[str, Any]], score: str, current: float) -> Cut | None:
    """The threshold at or above `current` that best separates accepted from rejected hand-offs,
    its J (0 at today's threshold, which every hand-off passed) and how sure the split is."""
    answered = [(h[score], h["answer"] == "accepted") for h in handoffs
                if h.get("answer") in ("accepted", "rejected") and score in h]
    yes = sum(1 for _, ok in answered if ok)
    no = len(answered) - yes
    if not yes or not no:
        return None
    best = (current, 0.0)
    for t in sorted({s for s, _ in answered if s > current}):
        tpr = sum(1 for s, ok in answered if ok and s >= t) / yes
        fpr = sum(1 for s, ok in answered if not ok and s >= t) / no
        if tpr - fpr > best[1] + 1e-9:
            best = (t, tpr - fpr)
    kept = [ok for s, ok in answered if s >= best[0]]
    lost = [ok for s, ok in answered if s < best[0]]
    return Cut(*best, p_value(Rate(sum(kept), len(kept)), Rate(sum(lost), len(lost))), len(kept), len(lost))


def propose(policy: CompiledPolicy, findings: list[Finding], results: list[dict[str, Any]],
            min_leads: int = 30) -> Proposal:
    loaded = load_policy_bytes(policy.source, policy.file)
    lines = policy.source.decode("utf-8").splitlines(keepends=True)
    doc = loaded.doc
    engagement = list(loaded.policy.scoring.engagement)
    changes: list[str] = []
    edits: dict[int, str] = {}  # 0-based line -> new text
    inserts: list[tuple[int, str]] = []
    qualify = _qualify(loaded)
    limits = qualify[1] if qualify else {}

    def item_lines(i: int) -> range:
        start = doc.line_of(("scoring", "engagement", i)) - 1
        end = (doc.line_of(("scoring", "engagement", i + 1)) - 1 if i + 1 < len(engagement)
               else doc.line_of(("scoring", "engagement", i, "points")))
        return range(start, max(end, start + 1))

    # 1. the most telling sure pair of steps both scored by the policy: a rule of its own
    used: set[int] = set()
    for f in findings:
        if not f.sure or f.lift is None or f.lift < 1.5 or " -> " not in f.feature:
            continue
        first, then = f.feature.split(" -> ")
        a, b = _rule_for(engagement, first), _rule_for(engagement, then)
        if " " in first or a is None or b is None:
            continue  # a count needs a bare event type for the first step
        bi, rule_b = b
        points = max(5, min(40, round(rule_b.points * (f.lift - 1))))
        slug = re.sub(r"[^a-z0-9]+", "-", f"{a[1].id}-then-{rule_b.id}".lower()).strip("-")
        when = {**rule_b.when, f"count.{first}.{PAIR_WINDOW}": {"gte": 1}}
        indent = re.match(r"\s*", lines[item_lines(0)[0]]).group(0)  # type: ignore[union-attr]
        inserts.append((item_lines(0)[0], (
            f"{indent}# suggested: {f.feature} sold {f.rate:.0%} against {f.rate_without:.0%} without it "
            f"(lift {f.lift:.1f}, {f.leads} leads, p {f.p:.2g})\n"
            f"{indent}- {{id: {slug}, on: {rule_b.event_types[0]}, when: {_flow(when)}, points: {points}, "
            f"signal: {rule_b.signal}}}\n")))
        changes.append(f"new engagement rule {slug}: +{points} {rule_b.signal} points when {then} follows "
                       f"{first} within {PAIR_WINDOW} (lift {f.lift:.1f}, {f.leads} leads, p {f.p:.2g})")
        used.update({a[0], bi})
        break

    # 2. points of single steps that sell far more (or less) often, unless a rule qualifies alone
    for f in findings:
        if not f.sure or f.lift is None or " -> " in f.feature or 0.5 < f.lift < 2.0:
            continue
        match = _rule_for(engagement, f.feature)
        if match is None or match[0] in used:
            continue
        i, rule = match
        if rule.points >= limits.get(rule.signal, math.inf):
            continue  # it hands a lead over on its own already: more points change nothing
        factor = min(2.0, max(0.5, f.lift))
        points = round(rule.points * factor)
        if points == rule.points:
            continue
        for n in item_lines(i):
            if re.search(r"points:\s*[-\d.]+", lines[n]):
                edits[n] = re.sub(r"(points:\s*)[-\d.]+", rf"\g<1>{points}", lines[n], count=1)
                break
        changes.append(f"{rule.id}: points {rule.points:g} -> {points} ({f.feature}: lift {f.lift:.1f}, "
                       f"{f.leads} leads, p {f.p:.2g})")
        used.add(i)

    # 3. thresholds, upwards only, where they separate accepted from rejected hand-offs
    handoffs = [h for r in results for h in answered_handoffs(r)]
    answered = sum(1 for h in handoffs if h.get("answer") in ("accepted", "rejected"))
    if qualify is not None and answered >= min_leads:
        qi, _ = qualify
        for score, current in limits.items():
            best = youden(handoffs, score, current)
            # as sure as a finding: a J that noise gives a few hundred hand-offs drops good leads
            if (best is None or best.j < 0.1 or best.threshold <= current or best.p >= 0.01
                    or min(best.above, best.below) < min_leads):
                continue
            line = doc.line_of(("rules", qi, "when", f"score.{score}")) - 1
            pattern = rf"(score\.{score}:\s*\{{\s*gte:\s*)[-\d.]+"
            new = re.sub(pattern, rf"\g<1>{best.threshold:g}", lines[line], count=1)
            if new != lines[line]:
                edits[line] = new
                rule_id = loaded.policy.rules[qi].id
                changes.append(f"{rule_id}: score.{score} at least {current:g} -> {best.threshold:g} "
                               f"(separates accepted from rejected hand-offs best: J {best.j:.2f} over "
                               f"{answered} answered, p {best.p:.2g})")

    version = loaded.policy.version + 1
    vline = doc.line_of(("version",)) - 1
    edits[vline] = re.sub(r"(version:\s*)\d+", rf"\g<1>{version}", lines[vline], count=1)
    out = [edits.get(n, line) for n, line in enumerate(lines)]
    for at, text in sorted(inserts, reverse=True):
        out.insert(at, text)
    text = "".join(out)
    try:
        load_policy_bytes(text.encode("utf-8"), f"{policy.name}.v{version}.yaml")
    except PolicyInvalid as err:  # never hand people a file that does not load
        raise ValueError(f"the suggested version does not validate: {err}") from None
    return Proposal(text, version, changes)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table(summary: dict[str, Any], findings: list[Finding], limit: int = 25) -> str:
    out = [f"{summary['leads']} leads learned from; outcomes: "
           + ", ".join(f"{k} {v}" for k, v in summary["outcomes"].items()),
           f"outcome known for {summary['known']} of them (sales answered {summary['answered']}, the "
           f"history labels {summary['labelled']} won or lost), won {summary['won']}"
           + (f" ({summary['win_rate']:.1%})" if summary["win_rate"] is not None else "")
           + "; what came before their outcome:"]
    if summary["rejection_reasons"]:
        out.append("sent back because: "
                   + "; ".join(f"{k} ({v})" for k, v in summary["rejection_reasons"].items()))
    out += ["", f"{'before a win':<52} {'leads':>6} {'won':>6} {'rate':>6} {'without':>8} {'lift':>5} "
                f"{'95% of rate':>13} {'p':>8}"]
    for f in findings[:limit]:
        lift = "-" if f.lift is None else f"{f.lift:.2f}"
        name = ("* " if f.sure else "  ") + f.feature
        out.append(f"{name:<52} {f.leads:>6} {f.sales:>6} {f.rate:>6.1%} {f.rate_without:>8.1%} {lift:>5} "
                   f"{f.interval[0]:>6.1%}-{f.interval[1]:<6.1%} {f.p:>8.2g}")
    out.append("(* sure: enough leads on both sides and p < 0.01)")
    return "\n".join(out)
