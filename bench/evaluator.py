"""Evaluations per second of the engine-backed evaluator on the default policy, against the
same policy hand-written as Python if/else (bench/baseline_policy.py), in the same run, in
alternating rounds (the ratio is the rounds' median); and RSS before and after N evaluations
(default 1,000,000). Target: at least 0.25. Last line: one JSON object.

    .venv/bin/python bench/evaluator.py [--evals 1000000] [--leads 2000] [--seed 7] [--rounds 5]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import baseline_policy  # noqa: E402

from bench.quick import parse  # noqa: E402
from rules.compile import load_compiled  # noqa: E402
from rules.evaluate import evaluate  # noqa: E402
from rules.models import Event, LeadRef  # noqa: E402

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
PERSONAS = {  # share, profile, behaviour (event type, data, weight)
    "hot": (0.15, {"role": "vp", "budget": 60000, "timeline": "this-quarter", "company_size": 300},
            [("page_view", {"path": "/pricing"}, 3), ("page_view", {"path": "/blog/x"}, 2),
             ("email_open", {}, 3), ("demo_request", {}, 1), ("email_click", {}, 2)]),
    "warm": (0.35, {"role": "director", "budget": 20000, "company_size": 80},
             [("page_view", {"path": "/blog/y"}, 4), ("email_open", {}, 4),
              ("content_download", {}, 2), ("webinar_attended", {}, 1),
              ("page_view", {"path": "/pricing"}, 1)]),
    "cold": (0.35, {"role": "manager", "company_size": 10},
             [("email_open", {}, 5), ("page_view", {"path": "/blog/z"}, 1), ("unsubscribe", {}, 0.2)]),
    "junk": (0.15, {"role": "student"}, [("page_view", {"path": "/pricing"}, 1)]),
}


def workload(leads: int, seed: int) -> list[list[tuple[Event, dict, datetime]]]:
    """Per lead: its events in time order, as (Event for the engine, dict for the baseline, now)."""
    rng = random.Random(seed)
    names = list(PERSONAS)
    shares = [PERSONAS[n][0] for n in names]
    out = []
    for i in range(leads):
        persona = rng.choices(names, shares)[0]
        _, profile, behaviour = PERSONAS[persona]
        domain = "mailinator.com" if persona == "junk" and i % 2 else "acme.example"
        email = f"lead{i}@{domain}"
        stamps = sorted(rng.uniform(0.1, 60) for _ in range(rng.randint(4, 14)))
        raw = [("signup", {}, 0.0, {"email": email, **profile})]
        weights = [w for _, _, w in behaviour]
        for day in stamps:
            kind, data, _ = rng.choices(behaviour, weights)[0]
            raw.append((kind, data, day, {"email": email}))
        raw += [("check", {"reason": "scheduled"}, float(d), {"email": email}) for d in range(7, 64, 7)]
        raw.sort(key=lambda r: r[2])
        events = []
        for n, (kind, payload, day, lead) in enumerate(raw):
            at = T0 + timedelta(days=day)
            ev = Event(id=f"{i}-{n}", type=kind, at=at, lead=LeadRef(**lead), data=payload)
            plain = {"type": kind, "at": at.timestamp(), "data": payload,
                     "lead": lead if kind == "signup" else {}}
            events.append((ev, plain, at))
        out.append(events)
    return out


def run_engine(policy, work, budget: int) -> tuple[int, dict[int, str]]:
    done, final = 0, {}
    while done < budget:
        for i, events in enumerate(work):
            lead = None
            for ev, _, now in events:
                lead = evaluate(policy, lead, ev, now).lead
                done += 1
            final[i] = (lead.state, lead.facts)
            if done >= budget:
                break
    return done, final


def run_baseline(work, budget: int) -> tuple[int, dict[int, str]]:
    done, final = 0, {}
    while done < budget:
        for i, events in enumerate(work):
            lead = None
            for _, plain, now in events:
                lead = baseline_policy.evaluate(lead, plain, now.timestamp())
                done += 1
            final[i] = (lead["state"], lead["facts"])
            if done >= budget:
                break
    return done, final


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evals", type=int, default=1_000_000)
    ap.add_argument("--leads", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=5, help="alternating baseline/engine rounds")
    ap.add_argument("--profile", action="store_true", help="print the top of a cProfile run")
    args = parse(ap, {"evals": 100_000, "leads": 500})

    policy = load_compiled(str(ROOT / "policies" / "lead-lifecycle.v1.yaml"))
    work = workload(args.leads, args.seed)
    per_cycle = sum(len(e) for e in work)

    # Agreement first (one full cycle each), which also warms both up.
    _, engine_states = run_engine(policy, work, per_cycle)
    _, base_states = run_baseline(work, per_cycle)
    agree = sum(engine_states[i] == base_states[i] for i in engine_states) / len(engine_states)
    if agree < 1.0:
        print("WARNING: the baseline no longer matches the policy; fix bench/baseline_policy.py")
    mix: dict[str, int] = {}
    for state, _ in engine_states.values():
        mix[state] = mix.get(state, 0) + 1
    print(f"workload: {args.leads} leads, {per_cycle} events a cycle; final states {mix}")
    print(f"agreement with the hand-written baseline (state and facts): {agree:.4f}")

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run_engine(policy, work, 20_000)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(12)
        print(buf.getvalue())

    # Alternating rounds, so that a busy neighbour slows both sides alike: per round the
    # baseline's share of the evaluations (at most 200,000 in all), then the engine's; the ratio
    # is the median of the rounds' ratios.
    rounds = max(1, args.rounds)
    base_each = max(1, min(args.evals, 200_000) // rounds)
    engine_each = max(1, args.evals // rounds)
    ratios: list[float] = []
    base_done = base_time = done = elapsed = 0.0
    rss_before = rss_mb()
    for _ in range(rounds):
        t = time.perf_counter()
        n, _ = run_baseline(work, base_each)
        spent = time.perf_counter() - t
        base_done, base_time = base_done + n, base_time + spent
        base_rate = n / spent
        t = time.perf_counter()
        n, _ = run_engine(policy, work, engine_each)
        spent = time.perf_counter() - t
        done, elapsed = done + n, elapsed + spent
        ratios.append((n / spent) / base_rate)
    rss_after = rss_mb()
    baseline_rate = base_done / base_time
    rate = done / elapsed
    ratio = statistics.median(ratios)
    print(f"baseline (Python if/else): {baseline_rate:,.0f} evaluations/s over {base_done:,.0f}")
    print(f"engine (durable-rules): {rate:,.0f} evaluations/s over {done:,.0f} ({elapsed:.0f} s)")
    print(f"ratio per round: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"RSS {rss_before:.1f} MB -> {rss_after:.1f} MB")
    print(json.dumps({
        "bench": "evaluator", "evals": int(done), "evals_per_s": round(rate),
        "baseline_evals_per_s": round(baseline_rate), "ratio": round(ratio, 4),
        "ratio_min": round(min(ratios), 4), "ratio_max": round(max(ratios), 4),
        "agreement": round(agree, 4), "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1), "rss_growth_mb": round(rss_after - rss_before, 1),
    }))


if __name__ == "__main__":
    main()
