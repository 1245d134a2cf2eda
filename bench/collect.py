"""Page views per second through the tracking script's door (POST /v1/collect, no key, one view
a request as a browser sends them) against the intake of the same page views with a key (POST
/v1/events, one event a request), in the same run: a dev server, a worker and the API in
processes of their own on loopback (bench.intake.running). Each round sends every view through
one door, as many at once through either (`--senders`, browsers side by side); rounds alternate
between the doors. The views come from visitors of whom a fifth are leads already (their views
go on to the lead, as the intake's do) and the rest anonymous (kept until the visitor is named).
Target: /v1/collect at no less than 0.8 of the keyed intake. Last line: one JSON object.

    .venv/bin/python bench/collect.py [--rounds 4] [--views 600] [--senders 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.intake import running  # noqa: E402
from bench.quick import parse  # noqa: E402

SITE = "http://www.bench.example"
KEY = "intake-bench-key-0123456789"
PAGES = ["/", "/pricing", "/blog/roi", "/blog/migrate", "/docs/start", "/customers", "/pricing/enterprise"]


def visitor_id(n: int) -> str:
    return f"bench-visitor-{n:08d}"


async def send_all(requests: list[tuple[str, dict[str, Any], dict[str, str]]], http: httpx.AsyncClient,
                   senders: int) -> tuple[int, float]:
    """Every request, `senders` at a time, each sender sending its next when the last is answered;
    how many were answered 2xx, and the seconds it took."""
    queue = list(requests)
    ok = 0

    async def sender() -> None:
        nonlocal ok
        while queue:
            path, body, headers = queue.pop()
            answer = await http.post(path, content=json.dumps(body), headers=headers)
            ok += answer.status_code < 300

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    return ok, time.perf_counter() - start


def views(tag: str, count: int, rng: random.Random, known: int) -> list[dict[str, Any]]:
    """`count` page views: a fifth by the `known` visitors (leads already), the rest by anonymous
    visitors of this round, a few views each."""
    out = []
    for n in range(count):
        anonymous = 1_000_000 + zlib.crc32(f"{tag}-{n // 4}".encode()) % 1_000_000
        who = rng.randrange(known) if n % 5 == 0 else anonymous
        page = rng.choice(PAGES) + ("?utm_source=bench&utm_medium=cpc" if rng.random() < 0.2 else "")
        out.append({"visitor": visitor_id(who), "n": n, "page": page,
                    "at": int(time.time() * 1000) - rng.randrange(60_000)})
    return out


def as_collect(view: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
    return ("/v1/collect", {"visitor": view["visitor"], "type": "page_view", "url": SITE + view["page"],
                            "title": view["page"], "referrer": "https://www.google.com/", "at": view["at"]},
            {"Origin": SITE, "Content-Type": "text/plain"})


def as_event(view: dict[str, Any], tag: str, known: int) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The same view as the intake takes it with a key: a page view of a lead (a known visitor's
    own lead, else one of the known leads: the intake has no anonymous visitors)."""
    lead = int(view["visitor"].rsplit("-", 1)[1]) % known
    path, _, query = view["page"].partition("?")
    data = {"path": path, "title": view["page"], "referrer": "https://www.google.com/"}
    if query:
        data.update(dict(pair.split("=") for pair in query.split("&")))
    return ("/v1/events", {"id": f"{tag}-{view['n']}", "type": "page_view", "at": view["at"] / 1000,
                           "lead": {"email": f"known-{lead}@bench.example"}, "data": data},
            {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--views", type=int, default=600, help="page views per round and door")
    ap.add_argument("--senders", type=int, default=16, help="requests in flight, through either door")
    ap.add_argument("--known", type=int, default=100, help="visitors who are leads before the rounds")
    args = parse(ap, {"rounds": 2, "views": 200})
    rng = random.Random(7)
    async with running(f"intake:{KEY}", sites=SITE, collect_rate="1000000") as (_, base), \
            httpx.AsyncClient(base_url=base, timeout=120) as http:
        # the known visitors: each signs up with its visitor id (a form would), so its views go on
        signups = [("/v1/events", {"type": "signup", "lead": {"email": f"known-{i}@bench.example",
                                                              "role": "manager"},
                                   "data": {"visitor_id": visitor_id(i)}},
                    {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
                   for i in range(args.known)]
        ok, _ = await send_all(signups, http, args.senders)
        assert ok == args.known, f"{ok} of {args.known} sign-ups taken"
        for door in ("collect", "intake"):  # warm both doors up
            warm = views(f"warm-{door}", 100, rng, args.known)
            await send_all([as_collect(v) if door == "collect" else as_event(v, f"warm-{door}", args.known)
                            for v in warm], http, args.senders)
        totals = {"collect": [0, 0.0], "intake": [0, 0.0]}
        for r in range(args.rounds):
            work = views(f"r{r}", args.views, rng, args.known)
            for door in (["collect", "intake"] if r % 2 == 0 else ["intake", "collect"]):
                requests = [as_collect(v) if door == "collect" else as_event(v, f"r{r}", args.known)
                            for v in work]
                done, took = await send_all(requests, http, args.senders)
                assert done == len(requests), f"{door}: {done} of {len(requests)} answered 2xx"
                totals[door][0] += done
                totals[door][1] += took
                print(f"round {r + 1}: {door:<8} {done / took:8.1f} views/s")
    rates = {door: done / took for door, (done, took) in totals.items()}
    ratio = rates["collect"] / rates["intake"]
    print(f"/v1/collect {rates['collect']:.1f} views/s, keyed intake {rates['intake']:.1f} views/s "
          f"({ratio:.2f})")
    print(json.dumps({"bench": "collect", "collect_views_per_s": round(rates["collect"], 1),
                      "intake_views_per_s": round(rates["intake"], 1), "ratio": round(ratio, 3),
                      "target": 0.8, "met": ratio >= 0.8, "views": int(totals["collect"][0]),
                      "known_share": 0.2, "senders": args.senders, "rounds": args.rounds}))


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)  # the Temporal client's threads may abort interpreter shutdown (sdk-python#300)
