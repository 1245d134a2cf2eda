"""`leadflow generate`: the same seed gives the same history byte for byte, and the history
looks like leads do (the shares the generator documents), in a form the policy takes whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict

from leadflow.replay.generate import generate
from rules.compile import load_compiled
from rules.identity import lead_key
from rules.models import Event, LeadRef
from rules.simulate import run_events
from tests.support.temporal_harness import ROOT


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leadflow", "generate", *args], cwd=ROOT,
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)


def test_the_same_seed_gives_the_same_history_and_another_seed_another():
    first, again, other = (cli("--leads", "300", "--days", "60", "--seed", s) for s in ("11", "11", "12"))
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout and first.stdout != other.stdout
    later = cli("--leads", "300", "--days", "60", "--seed", "11", "--start", "2027-02-01")
    assert json.loads(later.stdout.splitlines()[0])["at"].startswith("2027-02-0")
    # a reader that stops early (`| head -1`) while megabytes are still to come is no error
    cut = subprocess.run(f"{sys.executable} -m leadflow generate --leads 3000 --days 60 | head -1",
                         shell=True, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                         timeout=120)
    assert json.loads(cut.stdout)["type"] == "signup" and cut.stderr == ""
    bad = cli("--leads", "10", "--days", "0")
    assert bad.returncode == 1 and "--days more than 0" in bad.stderr


def test_a_history_looks_like_leads_and_the_policy_takes_all_of_it():
    events = list(generate(2000, 90, seed=3))
    times = [e["at"] for e in events]
    assert times == sorted(times)
    by_lead: dict[str, list[Event]] = defaultdict(list)
    for raw in events:
        event = Event.model_validate({k: v for k, v in raw.items() if k != "lead_id"})
        assert raw["lead_id"] == lead_key(LeadRef(email=event.lead.email))
        by_lead[raw["lead_id"]].append(event)
    assert len(by_lead) == 2000
    signups = [evs[0] for evs in by_lead.values()]
    assert all(e.type == "signup" for e in signups)
    kinds = Counter(e["type"] for e in events)
    for kind in ("page_view", "email_open", "email_click", "content_download", "webinar_attended",
                 "demo_request", "sales_accept", "sales_reject", "unsubscribe", "email_bounce"):
        assert kinds[kind] > 0, kind
    domains = Counter(e.lead.email.split("@")[1] for e in signups)
    junk = sum(n for d, n in domains.items() if d in ("mailinator.com", "guerrillamail.com", "yopmail.com",
                                                       "trashmail.com", "tempmail.dev", "rivalcrm.example",
                                                       "pipelinepro.example", "uni.example"))
    assert 0.05 < junk / 2000 < 0.15
    assert all(e.data.get("reason") for evs in by_lead.values() for e in evs if e.type == "sales_reject")
    machine_opens = sum(1 for e in events if e["type"] == "email_open" and e.get("data", {}).get("machine"))
    assert machine_opens > 0
    sources = Counter(e.data["source"] for e in signups)
    assert set(sources) == {"organic", "paid-search", "webinar", "referral", "trade-show", "partner"}

    # through the default policy: nothing refused, and about half the leads are not ready to buy
    policy = load_compiled(ROOT / "policies" / "lead-lifecycle.v1.yaml")
    finals: Counter[str] = Counter()
    for evs in by_lead.values():
        trail = run_events(policy, "generated", evs, record=True)
        assert not [d.rejected for d in trail.decisions if d.rejected], evs[0].lead.email
        assert trail.lead is not None
        finals[trail.lead.state] += 1
    assert 0.4 < finals["nurturing"] / 2000 < 0.85
    assert finals["disqualified"] > 0 and finals["derailed"] > 0 and finals["converted"] > 0
