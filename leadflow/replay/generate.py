"""Seeded, reproducible histories of many leads, shaped like real ones, in the format the event
archive exports (one event a line, `lead_id` beside the event's fields): what the demo, the tests
and the benches replay, and what `policy simulate` and `diff` read.

How the leads behave, and why (the shares are per source, see SOURCES):
- about half are not ready to buy: researchers who read the blog and open e-mail, and sign-ups
  who never come back;
- buyers show intent (pricing pages, demo requests, contact sales); evaluators read first and
  reach for pricing later, some after a webinar;
- some go quiet for weeks, then come back;
- junk: disposable addresses, competitors, students;
- addresses that bounce hard, people who unsubscribe;
- sales answer the hand-offs buyers ask for: accepted, or rejected with a reason; a lead who
  went to a webinar and then to the pricing page is accepted three times as often (a known
  pattern planted for `policy suggest` to find).

Pure: the same seed, leads, days and start give the same lines, byte for byte."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rules.identity import lead_key
from rules.models import LeadRef

DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
DAY = 86400.0

PERSONAS = ("researcher", "ghost", "buyer", "evaluator", "returner", "junk", "unsubscriber", "bouncer")
# persona shares by lead source: referrals and trade shows bring buyers, paid search brings junk
SOURCES: dict[str, tuple[float, tuple[float, ...]]] = {
    #             share   researcher ghost buyer evaluator returner junk unsubscriber bouncer
    "organic":     (0.30, (0.36, 0.14, 0.10, 0.12, 0.12, 0.08, 0.05, 0.03)),
    "paid-search": (0.25, (0.30, 0.20, 0.06, 0.08, 0.08, 0.18, 0.06, 0.04)),
    "webinar":     (0.20, (0.38, 0.08, 0.12, 0.20, 0.12, 0.04, 0.04, 0.02)),
    "referral":    (0.10, (0.24, 0.06, 0.30, 0.18, 0.12, 0.02, 0.04, 0.04)),
    "trade-show":  (0.10, (0.30, 0.12, 0.20, 0.14, 0.12, 0.04, 0.04, 0.04)),
    "partner":     (0.05, (0.30, 0.10, 0.18, 0.18, 0.12, 0.04, 0.04, 0.04)),
}
FIRST = ("Ana", "Ben", "Cleo", "Dev", "Eva", "Finn", "Gia", "Hugo", "Ines", "Jon", "Kai", "Lena", "Milo",
         "Nora", "Omar", "Pia", "Quinn", "Rita", "Sam", "Tara", "Uma", "Vik", "Wren", "Yara", "Zoe")
WORDS = ("north", "blue", "iron", "cedar", "lumen", "atlas", "brook", "nova", "pine", "summit", "delta",
         "harbor", "orbit", "maple", "quartz", "river", "stone", "vector", "willow", "zephyr")
SUFFIX = ("labs", "works", "systems", "group", "analytics", "logistics", "health", "retail", "cloud")
DISPOSABLE = ("mailinator.com", "guerrillamail.com", "yopmail.com", "trashmail.com", "tempmail.dev")
COMPETITORS = ("rivalcrm.example", "pipelinepro.example")
DECIDERS = ("owner", "founder", "c-level", "vp", "director")
OTHERS = ("manager", "lead", "analyst", "engineer", "consultant", "specialist")
TIMELINES = ("now", "this-quarter", "next-quarter", "next-year", "unknown")
BLOG = ("/blog/lead-scoring", "/blog/nurture-that-works", "/blog/bant-in-practice", "/blog/sales-handoff",
        "/blog/intent-signals", "/docs/getting-started", "/docs/integrations", "/customers")
PRICING = ("/pricing", "/pricing/enterprise", "/pricing/compare")
ASSETS = ("state-of-lead-gen-2026.pdf", "roi-calculator.xlsx", "buyers-guide.pdf", "nurture-playbook.pdf")
WEBINARS = ("scoring-101", "from-mql-to-sql", "q3-product-tour")
CONTENT = ("welcome-guide", "case-study", "product-tour", "pricing-explainer", "check-in")
REJECTIONS = ("no budget until next year", "too small for our plans", "already a customer of a rival",
              "wrong contact, asked to reach the CTO", "timing: revisit next quarter")
HANDS = ("demo_request", "contact_sales", "meeting_booked")
ACCEPT = 0.28  # sales accept a hand-off ...
ACCEPT_AFTER_WEBINAR_PRICING = 0.84  # ... three times as often after a webinar, then pricing


@dataclass
class _Lead:
    index: int
    lead_id: str
    email: str
    persona: str
    signup: float
    lines: list[tuple[float, int, dict[str, Any]]]
    webinar: bool = False  # attended a webinar so far
    pattern: bool = False  # a pricing page after a webinar: the planted path to a sale

    def add(self, at: float, kind: str, data: dict[str, Any] | None = None) -> None:
        if kind == "webinar_attended":
            self.webinar = True
        elif kind == "page_view" and self.webinar and str((data or {}).get("path", "")).startswith("/pric"):
            self.pattern = True
        n = len(self.lines)
        event: dict[str, Any] = {"id": f"g-{self.index}-{n}", "type": kind, "at": _iso(at),
                                 "lead": {"email": self.email}}
        if data:
            event["data"] = data
        event["lead_id"] = self.lead_id
        self.lines.append((at, n, event))


def generate(leads: int, days: float, seed: int, start: datetime = DEFAULT_START) -> Iterator[dict[str, Any]]:
    """The events of `leads` leads signing up over `days` days from `start`, in time order."""
    if leads < 0 or days <= 0:
        raise ValueError("leads must be 0 or more and days more than 0")
    rng = random.Random(seed)
    t0, end = start.timestamp(), start.timestamp() + days * DAY
    out: list[tuple[float, int, int, dict[str, Any]]] = []
    for i in range(leads):
        lead = _one(rng, i, t0, end, days)
        out.extend((at, i, n, event) for at, n, event in lead.lines if at < end)
    out.sort(key=lambda line: (line[0], line[1], line[2]))
    for *_, event in out:
        yield event


def lines(leads: int, days: float, seed: int, start: datetime = DEFAULT_START) -> Iterator[str]:
    for event in generate(leads, days, seed, start):
        yield json.dumps(event, separators=(",", ":"))


def _one(rng: random.Random, i: int, t0: float, end: float, days: float) -> _Lead:
    source = _pick(rng, list(SOURCES), [share for share, _ in SOURCES.values()])
    persona = _pick(rng, list(PERSONAS), list(SOURCES[source][1]))
    first = rng.choice(FIRST)
    company = f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {rng.choice(SUFFIX).title()}"
    domain = f"{company.lower().replace(' ', '')}.example"
    profile: dict[str, Any] = {"first_name": first, "company": company}
    if persona == "junk":
        kind = rng.random()
        if kind < 0.45:
            domain = rng.choice(DISPOSABLE)
            profile["role"] = rng.choice(DECIDERS + OTHERS)
        elif kind < 0.7:
            domain = rng.choice(COMPETITORS)
            profile["role"] = rng.choice(OTHERS)
        else:
            domain = "uni.example"
            profile["role"] = "student"
    elif persona in ("buyer", "evaluator"):
        profile["role"] = rng.choice(DECIDERS) if rng.random() < 0.75 else rng.choice(OTHERS)
        profile["budget"] = rng.choice((10_000, 20_000, 35_000, 50_000, 80_000, 150_000))
        profile["timeline"] = rng.choice(TIMELINES[:3]) if persona == "buyer" else rng.choice(TIMELINES[1:4])
    else:
        profile["role"] = rng.choice(OTHERS) if rng.random() < 0.8 else rng.choice(DECIDERS)
        if rng.random() < 0.3:
            profile["timeline"] = rng.choice(TIMELINES[2:])
    profile["company_size"] = max(1, int(math.exp(rng.gauss(4.0, 1.4))))
    if rng.random() < 0.2:
        profile["need"] = rng.choice(("lead scoring", "nurture e-mail", "sales hand-off", "reporting"))
    email = f"{first.lower()}.{i}@{domain}"
    signup = t0 + rng.uniform(0, 0.8) * days * DAY
    lead = _Lead(i, lead_key(LeadRef(email=email)), email, persona, signup, [])
    lead.lines.append((signup, 0, {"id": f"g-{i}-0", "type": "signup", "at": _iso(signup),
                                   "lead": {"email": email, **profile}, "data": {"source": source},
                                   "lead_id": lead.lead_id}))
    _behave(rng, lead, end)
    return lead


def _behave(rng: random.Random, lead: _Lead, end: float) -> None:
    at, persona = lead.signup, lead.persona

    def later(mean_days: float) -> float:
        return rng.expovariate(1 / (mean_days * DAY))

    def opens(t: float) -> None:
        content = rng.choice(CONTENT)
        if rng.random() < 0.3:  # a mail privacy proxy fetches the pixel on delivery: a machine's open
            lead.add(t + rng.uniform(1, 30), "email_open", {"content": content, "machine": True})
        if rng.random() < 0.7:
            t += later(0.5)
            lead.add(t, "email_open", {"content": content})
            if rng.random() < 0.3:
                lead.add(t + rng.uniform(20, 600), "email_click", {"content": content})

    def reading(t: float, until: float, mean_gap: float, intent: float) -> float:
        while True:
            t += later(mean_gap)
            if t >= until:
                return t
            roll = rng.random()
            if roll < intent:
                lead.add(t, "page_view", {"path": rng.choice(PRICING)})
            elif roll < 0.55:
                lead.add(t, "page_view", {"path": rng.choice(BLOG)})
            elif roll < 0.75:
                opens(t)
            elif roll < 0.85:
                lead.add(t, "content_download", {"asset": rng.choice(ASSETS)})
            elif roll < 0.92:
                lead.add(t, "webinar_attended", {"webinar": rng.choice(WEBINARS)})
                if rng.random() < 0.5:  # webinar, then pricing: the path that converts best
                    lead.add(t + later(2), "page_view", {"path": "/pricing"})
            else:
                lead.add(t, "form_submit", {"form": "newsletter"})

    def hand_raise(t: float) -> None:
        lead.add(t, rng.choice(HANDS))
        answer_at = t + rng.uniform(2, 30) * 3600
        # the planted pattern: a webinar, then the pricing page, converts three times as often
        if rng.random() < (ACCEPT_AFTER_WEBINAR_PRICING if lead.pattern else ACCEPT):
            lead.add(answer_at, "sales_accept", {"by": rng.choice(("sam", "ali", "jo"))})
        else:
            lead.add(answer_at, "sales_reject", {"by": rng.choice(("sam", "ali", "jo")),
                                                 "reason": rng.choice(REJECTIONS)})

    if persona == "researcher":
        reading(at, min(end, at + rng.uniform(20, 120) * DAY), rng.uniform(3, 9), 0.03)
    elif persona == "ghost":
        if rng.random() < 0.5:
            opens(at + later(2))
    elif persona == "buyer":
        t = reading(at, at + rng.uniform(1, 10) * DAY, 1.5, 0.35)
        hand_raise(t)
        if rng.random() < 0.3:
            reading(t + DAY, min(end, t + 40 * DAY), 6, 0.2)
    elif persona == "evaluator":
        t = reading(at, at + rng.uniform(10, 40) * DAY, 3, 0.15)
        if rng.random() < 0.5:
            hand_raise(t)
    elif persona == "returner":
        t = reading(at, at + rng.uniform(3, 10) * DAY, 2, 0.05)
        t += rng.uniform(30, 70) * DAY  # weeks of silence
        t = reading(t, t + rng.uniform(5, 20) * DAY, 2, 0.2)
        if rng.random() < 0.3:
            hand_raise(t)
    elif persona == "junk":
        if rng.random() < 0.4:
            reading(at, at + 5 * DAY, 2, 0.1)
    elif persona == "unsubscriber":
        t = reading(at, at + rng.uniform(3, 30) * DAY, 4, 0.02)
        lead.add(t, "unsubscribe", {"via": "link"})
    elif persona == "bouncer":
        lead.add(at + rng.uniform(60, 3600), "email_bounce", {"hard": True, "content": "welcome-guide"})


def _pick(rng: random.Random, items: list[str], weights: list[float]) -> str:
    return rng.choices(items, weights=weights)[0]


def _iso(seconds: float) -> str:
    return (datetime.fromtimestamp(round(seconds, 3), timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"))
