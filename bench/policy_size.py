"""Evaluations per second for policies of about 40, 400 and 4,000 rules, on the same events.

The policies are the default policy grown with generated rules (bench/policy_gen.py); the events
are bench/evaluator.py's workload with territories, industries, documentation pages, assets,
webinars and campaigns added, so the generated rules have something to match. The policies
are measured in alternating rounds in one process, so a busy neighbour slows all of them alike.
Target: the 4,000-rule policy at no less than half the speed of the 40-rule one. Last line: one
JSON object.

    .venv/bin/python bench/policy_size.py [--leads 300] [--rounds 9] [--sizes 40,400,4000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import evaluator  # noqa: E402
import policy_gen  # noqa: E402

from bench.quick import parse  # noqa: E402
from rules.compile import CompiledPolicy, compile_policy  # noqa: E402
from rules.evaluate import evaluate  # noqa: E402
from rules.models import Event, LeadRef  # noqa: E402
from rules.validate import load_policy_bytes  # noqa: E402


def workload(leads: int, seed: int) -> list[list[tuple[Event, Any]]]:
    """bench/evaluator.py's leads and events, with the fields the generated rules read."""
    rng = random.Random(seed)
    out = []
    for events in evaluator.workload(leads, seed):
        extra = {"region": f"r{rng.randrange(policy_gen.REGIONS)}", "country": f"c{rng.randrange(500)}",
                 "industry": f"i{rng.randrange(500)}"}
        lead_events = []
        for ev, _, now in events:
            data = dict(ev.data)
            lead = ev.lead
            if ev.type == "signup":
                lead = LeadRef(**{**ev.lead.model_dump(exclude_none=True), **extra})
            elif ev.type == "page_view" and rng.random() < 0.5:
                data["path"] = f"/docs/p{rng.randrange(600)}/guide"
            elif ev.type == "content_download":
                data["asset"] = f"a{rng.randrange(600)}"
            elif ev.type == "webinar_attended":
                data["webinar"] = f"w{rng.randrange(600)}"
            if ev.type != "check" and rng.random() < 0.2:
                data["campaign"] = f"k{rng.randrange(600)}"
            lead_events.append((ev.model_copy(update={"data": data, "lead": lead}), now))
        out.append(lead_events)
    return out


def run(policy: CompiledPolicy, work: list[list[tuple[Event, Any]]]
        ) -> tuple[int, float, dict[int, str], int]:
    """Every lead's events through the evaluator: (evaluations, seconds, final states, firings)."""
    done, fired, final = 0, 0, {}
    start = time.perf_counter()
    for i, events in enumerate(work):
        lead = None
        for ev, now in events:
            decision = evaluate(policy, lead, ev, now)
            lead = decision.lead
            fired += len(decision.fired)
            done += 1
        final[i] = lead.state
    return done, time.perf_counter() - start, final, fired


def _label(size: int) -> str:
    return f"{size:>5}" if size > 0 else f"{-size:>5} (all but {-size - 40} never matching)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--sizes", default="40,400,4000")
    ap.add_argument("--never", type=int, default=300,
                    help="also measure the smallest policy plus this many rules that never match")
    ap.add_argument("--seed", type=int, default=11)
    args = parse(ap, {"rounds": 3})
    sizes = [int(s) for s in args.sizes.split(",")]

    policies: dict[int, CompiledPolicy] = {}
    validate_s: dict[int, float] = {}
    never = -(sizes[0] + args.never)  # a negative size: that many rules, none of which matches
    if args.never:
        sizes.append(never)
    for size in sizes:
        raw = yaml.safe_dump(policy_gen.grow(abs(size), never=size < 0), sort_keys=False).encode()
        t = time.perf_counter()
        policies[size] = compile_policy(load_policy_bytes(raw, f"generated-{size}.yaml"))
        validate_s[size] = time.perf_counter() - t
        shapes = ", ".join(f"{name} {'flat' if s.flat else f'{len(s.indexes)} indexes'}"
                           for name, s in policies[size].plans.items())
        print(f"{_label(size)} rules asked, {len(policies[size].rules)} compiled in {validate_s[size]:.1f} s "
              f"(validate + compile); {shapes}")

    work = workload(args.leads, args.seed)
    per_round = sum(len(e) for e in work)
    print(f"workload: {args.leads} leads, {per_round} events a round, {args.rounds} rounds")
    finals: dict[int, dict[int, str]] = {}
    fired: dict[int, float] = {}
    for size in sizes:  # warm up: registers each ruleset, fills caches
        done, _, finals[size], n = run(policies[size], work)
        fired[size] = n / done
    base = sizes[0]
    totals = {size: [0, 0.0] for size in sizes}
    paired: dict[int, list[float]] = {size: [] for size in sizes}  # per round, against the base
    for r in range(args.rounds):
        order = sizes if r % 2 == 0 else list(reversed(sizes))
        this_round = {}
        for size in order:
            done, elapsed, _, _ = run(policies[size], work)
            totals[size][0] += done
            totals[size][1] += elapsed
            this_round[size] = done / elapsed
        for size in sizes:
            paired[size].append(this_round[size] / this_round[base])
    rates = {size: totals[size][0] / totals[size][1] for size in sizes}
    # The machine's speed drifts between rounds; a ratio taken within one round does not.
    ratios = {size: statistics.median(paired[size]) for size in sizes}
    for size in sizes:
        same = sum(finals[size][i] == finals[base][i] for i in finals[base]) / len(finals[base])
        print(f"{_label(size)} rules: {rates[size]:>8,.0f} evaluations/s  ({ratios[size]:.2f} of "
              f"{base}, median of {args.rounds} rounds); {fired[size]:.1f} rules fire per event; "
              f"final states as with {base} rules: {same:.3f}")
    same_all = min(sum(finals[s][i] == finals[base][i] for i in finals[base]) / len(finals[base])
                   for s in sizes)
    grown = [s for s in sizes if s > 0]
    print(json.dumps({
        "bench": "policy_size", "rules": [len(policies[s].rules) for s in grown],
        "evals_per_s": [round(rates[s]) for s in grown],
        "ratios": [round(ratios[s], 3) for s in grown],
        "ratio_largest": round(ratios[grown[-1]], 3),
        "target_met": ratios[grown[-1]] >= 0.5,
        **({"never_matching_rules": args.never, "never_matching_ratio": round(ratios[never], 3)}
           if args.never else {}),
        "fired_per_event": [round(fired[s], 2) for s in grown],
        "validate_compile_s": [round(validate_s[s], 2) for s in grown],
        "same_final_states": round(same_all, 4), "rss_mb": round(evaluator.rss_mb(), 1),
        "events": per_round * args.rounds,
    }))


if __name__ == "__main__":
    main()
