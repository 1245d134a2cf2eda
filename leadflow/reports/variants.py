"""The figures of a policy's A/B tests of nurture content (rules.variants), from the shared
database, and which variant wins.

Per variant of one test, counted in leads (a lead that got the step twice, a track begun again,
counts once):

- `assigned`: leads the step gave this variant: an e-mail delivery of it in the ledger
  (`deliveries`, kind `email`, `subject` the variant, the key the step's: see
  rules.variants.AbStep.sent_by), whatever its status;
- `sent`: of those, leads it went out to (status `sent`): every rate below is of these;
- `opened`, `clicked`: leads for whom a person opened it or clicked one of its links: an
  `email_open` / `email_click` event in the archive (`events`) whose `data.delivery` names one of
  the lead's sent deliveries of the step (leadflow.delivery.links.delivery_digest of its key),
  without `data.machine: true` (what a privacy proxy or a link scanner fetched:
  leadflow.delivery.machines);
- `sales_ready`: leads that moved to sales-ready at or after the step's e-mail first went out to
  them (a `transitions` row, `to_state` 'sales-ready', `at` >= the delivery's `sent_at`).

Each rate has its Wilson 95% interval. `verdict` compares the variants on one rate (the move to
sales-ready unless asked for another) with the pooled two-proportion z-test, two-sided: the
variant with the highest rate wins when it beats every other at 95% confidence (Bonferroni: with k
variants, each of its k-1 comparisons at p < 0.05 / (k-1)) and every group has at least 5
expected leads each way at the pooled rate; otherwise there is no winner yet."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, select

from leadflow.db.database import Database
from leadflow.db.schema import deliveries, events, policy_log, transitions
from leadflow.delivery.links import delivery_digest
from leadflow.governance.registry import Registry
from leadflow.reports.proportions import CONFIDENCE, MIN_EXPECTED, Rate, p_value, testable
from rules.policy import Policy
from rules.validate import load_policy_bytes
from rules.variants import AbStep, ab_steps

Metric = Literal["sales_ready", "clicked", "opened"]
CHUNK = 500  # lead ids per `IN (...)`: well under any database's limit on parameters


class NoAbTest(LookupError):
    """No such policy version in the shared database, or no A/B test at that step of it."""


@dataclass(frozen=True)
class VariantFigures:
    variant: str
    share: int  # its percentage in the policy's split
    assigned: int
    sent: int
    opened: Rate
    clicked: Rate
    sales_ready: Rate

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "share": self.share, "assigned": self.assigned, "sent": self.sent,
                "opened": self.opened.as_dict(), "clicked": self.clicked.as_dict(),
                "sales_ready": self.sales_ready.as_dict()}


@dataclass(frozen=True)
class Verdict:
    metric: Metric
    said: str  # "no winner yet", or "<variant> better with 95% confidence"
    winner: str | None
    why: str  # the figures behind it, in a sentence
    p_value: float | None  # the leader against its closest rival, when the test could be made

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "said": self.said, "winner": self.winner, "why": self.why,
                "p_value": self.p_value}


def ab_tests(ledger: Database, policy_name: str, version: int | None = None) -> list[AbStep]:
    """Every A/B test of a policy version in the shared database (None: the active one)."""
    return ab_steps(_policy(ledger, policy_name, version))


def variant_figures(ledger: Database, policy_name: str, track: str, step: int,
                    version: int | None = None) -> list[VariantFigures]:
    """The figures of the A/B test at `step` (from 0) of `track` in a policy version of the
    shared database (None: the active one), one per variant in the policy's order."""
    for ab in ab_tests(ledger, policy_name, version):
        if ab.track == track and ab.step == step:
            return figures(ledger, ab, began(ledger, policy_name, ab))
    raise NoAbTest(f"policy {policy_name}: no A/B test at step {step} of track {track!r}")


def report(ledger: Database, policy_name: str, version: int | None = None, metric: Metric = "sales_ready"
           ) -> dict[str, Any]:
    """Every A/B test of a policy version (None: the active one) with its figures and verdict,
    as one JSON-ready object."""
    policy = _policy(ledger, policy_name, version)
    tests = []
    for ab in ab_steps(policy):
        found = figures(ledger, ab, began(ledger, policy_name, ab))
        tests.append({"test": ab.name, "track": ab.track, "step": ab.step, "rule": ab.rule,
                      "variants": [f.as_dict() for f in found], "verdict": verdict(found, metric).as_dict()})
    return {"policy": policy.policy, "version": policy.version, "metric": metric, "tests": tests}


def table(r: dict[str, Any]) -> str:
    """The report for a terminal: per test, a line per variant, then the verdict and why."""
    out = [f"A/B tests of {r['policy']} v{r['version']}: {len(r['tests'])} (rates with their 95% intervals)"]
    for test in r["tests"]:
        out += ["", f"{test['test']}", f"  {'variant':<22} {'share':>5} {'assigned':>9} {'sent':>6}  "
                                       f"{'opened':<16}{'clicked':<16}sales-ready"]
        for v in test["variants"]:
            rates = "".join(f"{_cell(v[m]):<16}" for m in ("opened", "clicked", "sales_ready"))
            line = f"  {v['variant']:<22} {v['share']:>4}% {v['assigned']:>9} {v['sent']:>6}  {rates}"
            out.append(line.rstrip())
        said = test["verdict"]
        out.append(f"  on {r['metric'].replace('_', '-')}: {said['said']} ({said['why']})")
    return "\n".join(out)


def _cell(rate: dict[str, Any]) -> str:
    """`12 (8-17%)`: the count and its Wilson interval."""
    if rate["rate"] is None:
        return "-"
    return f"{rate['count']} ({rate['low'] * 100:.0f}-{rate['high']:.0%})"


def began(ledger: Database, policy_name: str, ab: AbStep) -> float | None:
    """When the test began: the first activation of a version of the policy with this test (the
    same step, the same variants; its split may have changed since). None: never activated."""
    c = policy_log.c
    registry = Registry(ledger)
    with ledger.engine.connect() as db:
        runs = db.execute(select(c.sha, c.at).where(c.name == policy_name, c.action == "activated")
                          .order_by(c.id)).all()
    tested: dict[str, bool] = {}
    for sha, at in runs:
        if sha not in tested:
            found = registry.by_sha(sha)
            tested[sha] = found is not None and any(
                other.seed == ab.seed and other.variants == ab.variants
                for other in ab_steps(load_policy_bytes(found.text, found.file).policy))
        if tested[sha]:
            return float(at)
    return None


def figures(ledger: Database, ab: AbStep, since: float | None = None) -> list[VariantFigures]:
    """One A/B test's figures, one per variant in the policy's order (see the module's words);
    only what was sent from `since` (when the test began: a variant's content id sent by the
    same step before the test was an ordinary send, not one side of it)."""
    assigned: dict[str, set[str]] = {v: set() for v in ab.variants}
    first_sent: dict[str, dict[str, float]] = {v: {} for v in ab.variants}  # variant -> lead -> when
    named: dict[str, tuple[str, str]] = {}  # a sent delivery's digest -> (variant, lead)
    d = deliveries.c
    query = select(d.key, d.lead, d.subject, d.status, d.sent_at, d.updated_at).where(
        and_(d.kind == "email", d.subject.in_(ab.variants)))
    if since is not None:
        query = query.where(d.created_at >= since)
    with ledger.engine.connect() as db:
        for row in db.execute(query):
            if not ab.sent_by(row.key, row.subject):
                continue
            assigned[row.subject].add(row.lead)
            if row.status != "sent":
                continue
            at = row.sent_at if row.sent_at is not None else row.updated_at
            leads = first_sent[row.subject]
            leads[row.lead] = min(at, leads.get(row.lead, at))
            named[delivery_digest(row.key)] = (row.subject, row.lead)
        sent_to = sorted({lead for leads in first_sent.values() for lead in leads})
        opened, clicked = _people_fetches(db, sent_to, named)
        moved = _moved_to_sales_ready(db, sent_to)
    out = []
    for variant, share in zip(ab.variants, ab.split, strict=True):
        leads = first_sent[variant]
        ready = sum(1 for lead, at in leads.items() if any(t >= at for t in moved.get(lead, ())))
        out.append(VariantFigures(
            variant, share, len(assigned[variant]), len(leads),
            Rate(len(opened.get(variant, set()) & leads.keys()), len(leads)),
            Rate(len(clicked.get(variant, set()) & leads.keys()), len(leads)),
            Rate(ready, len(leads))))
    return out


def verdict(figures: Sequence[VariantFigures], metric: Metric = "sales_ready",
            confidence: float = CONFIDENCE) -> Verdict:
    """Which variant is better on `metric`, if one is with `confidence` (see the module's words)."""
    rates = [(f.variant, _rate(f, metric)) for f in figures]
    measured = [(variant, rate) for variant, rate in rates if rate.of]
    if len(measured) < 2:
        return Verdict(metric, "no winner yet", None, "fewer than two variants went out", None)
    ranked = sorted(measured, key=lambda vr: -(vr[1].value or 0.0))
    (leader, best), rest = ranked[0], [vr for vr in rates if vr[0] != ranked[0][0]]
    level = (1 - confidence) / len(rest)
    worst = 0.0
    for other, rate in rest:
        if not testable(best, rate):
            return Verdict(metric, "no winner yet", None,
                           f"too few leads to tell {leader} ({_said(best)}) from {other} ({_said(rate)}): "
                           f"the test wants {MIN_EXPECTED} or more expected each way per variant", None)
        worst = max(worst, p_value(best, rate))
    against = ", ".join(f"{other} {_said(rate)}" for other, rate in rest)
    why = f"{leader} {_said(best)} against {against}: p = {worst:.3g}"
    if worst >= level:
        return Verdict(metric, "no winner yet", None, f"{why}, not below {level:.3g}", worst)
    said = f"{leader} better with {confidence:.0%} confidence"
    return Verdict(metric, said, leader, f"{why} < {level:.3g}", worst)


def _rate(f: VariantFigures, metric: Metric) -> Rate:
    rate: Rate = getattr(f, metric)
    return rate


def _said(rate: Rate) -> str:
    return f"{rate.count}/{rate.of} = {rate.value or 0.0:.1%}"


def _chunks(leads: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(leads), CHUNK):
        yield leads[i:i + CHUNK]


def _people_fetches(db: Any, leads: list[str], named: dict[str, tuple[str, str]]
                    ) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per variant, the leads a person opened the step's e-mail for, and clicked in it."""
    opened: dict[str, set[str]] = {}
    clicked: dict[str, set[str]] = {}
    e = events.c
    for chunk in _chunks(leads):
        query = select(e.type, e.body).where(and_(e.type.in_(("email_open", "email_click")),
                                                  e.lead.in_(chunk)))
        for kind, body in db.execute(query):
            data = json.loads(body).get("data") or {}
            hit = named.get(str(data.get("delivery")))
            if hit is None or data.get("machine") is True:
                continue
            variant, lead = hit
            (opened if kind == "email_open" else clicked).setdefault(variant, set()).add(lead)
    return opened, clicked


def _moved_to_sales_ready(db: Any, leads: list[str]) -> dict[str, list[float]]:
    """When each lead moved to sales-ready (every time)."""
    moved: dict[str, list[float]] = {}
    t = transitions.c
    for chunk in _chunks(leads):
        query = select(t.lead, t.at).where(and_(t.to_state == "sales-ready", t.lead.in_(chunk)))
        for lead, at in db.execute(query):
            moved.setdefault(lead, []).append(at)
    return moved


def _policy(ledger: Database, name: str, version: int | None) -> Policy:
    registry = Registry(ledger)
    if version is None:
        state = registry.state(name)
        if state is None:
            raise NoAbTest(f"policy {name}: no version is active in the shared database")
        version = state.version
    found = registry.version(name, version)
    if found is None:
        raise NoAbTest(f"policy {name}: no version {version} in the shared database")
    return load_policy_bytes(found.text, found.file).policy
