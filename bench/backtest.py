"""A generated history through `policy simulate`: events per second on every core, the speed-up
over one core, and agreement with a one-process run of the same history (must be 1.0). Target:
1,000,000 events in at most 60 seconds on this 2-core machine. The history is read as `policy
simulate` reads its file (JSON Lines, leadflow.replay.simulate.group), that read timed beside it.
Last line: one JSON object.

    .venv/bin/python bench/backtest.py [--events 1000000] [--days 90] [--seed 1] [--processes N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.quick import parse  # noqa: E402
from leadflow.replay.generate import generate  # noqa: E402
from leadflow.replay.simulate import group, simulate_many  # noqa: E402

POLICY = str(ROOT / "policies" / "lead-lifecycle.v1.yaml")
TARGET_SECONDS_PER_MILLION = 60.0


def history(events: int, days: float, seed: int) -> list[dict[str, Any]]:
    """At least `events` events, in time order: leads are added (a tenth more each time) until there are."""
    leads = max(10, events // 8)
    while True:
        log = list(generate(leads, days, seed))
        if len(log) >= events:
            return log
        leads = int(leads * max(1.1, events / max(len(log), 1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=90)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parse(ap, {"events": 100_000})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.jsonl"
        with path.open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(event, separators=(",", ":")) + "\n"
                           for event in history(args.events, args.days, args.seed))
        generated = time.perf_counter() - started
        t = time.perf_counter()
        with path.open(encoding="utf-8") as log:
            leads, end = group(log, str(path))
        read = time.perf_counter() - t
    events = sum(len(v) for v in leads.values())
    print(f"{events:,} events of {len(leads):,} leads over {args.days:g} days (generated in "
          f"{generated:.1f} s; read as `policy simulate` reads it in {read:.1f} s)", flush=True)
    t = time.perf_counter()
    spread = simulate_many(POLICY, leads, end, processes=args.processes)
    many = time.perf_counter() - t
    print(f"{args.processes} processes: {many:.1f} s, {events / many:,.0f} events/s", flush=True)
    t = time.perf_counter()
    one = simulate_many(POLICY, leads, end, processes=1)
    single = time.perf_counter() - t
    print(f"1 process: {single:.1f} s, {events / single:,.0f} events/s", flush=True)
    agree = sum(1 for a, b in zip(spread, one, strict=True) if a == b) / max(len(one), 1)
    per_million = many / events * 1_000_000
    with_read = (read + many) / events * 1_000_000
    print(f"speed-up {single / many:.2f}x; agreement {agree:.3f}; a million events would take "
          f"{per_million:.0f} s (target {TARGET_SECONDS_PER_MILLION:.0f} s): "
          f"{'met' if per_million <= TARGET_SECONDS_PER_MILLION and agree == 1.0 else 'MISSED'}; "
          f"{with_read:.0f} s with the file's read")
    print(json.dumps({"bench": "backtest", "events": events, "leads": len(leads), "days": args.days,
                      "processes": args.processes, "seconds": round(many, 2),
                      "events_per_s": round(events / many, 1), "single_seconds": round(single, 2),
                      "single_events_per_s": round(events / single, 1), "speedup": round(single / many, 2),
                      "agreement": agree, "seconds_per_million": round(per_million, 1),
                      "read_seconds": round(read, 2), "read_events_per_s": round(events / read, 1),
                      "with_read_seconds_per_million": round(with_read, 1),
                      "target_seconds_per_million": TARGET_SECONDS_PER_MILLION,
                      "met": per_million <= TARGET_SECONDS_PER_MILLION and agree == 1.0}))


if __name__ == "__main__":
    main()
