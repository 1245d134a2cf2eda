"""One lifecycle: for histories hypothesis makes (sign-ups of every kind, behaviour, silence long
enough for nurture steps and inactivity, hand-offs answered both ways or left to breach their
SLA, with and without breach steps, runs that end in a final state and leads that come back),
the live LeadWorkflow and HandoffWorkflows on the time-skipping server and the simulation
(rules.simulate, what `policy simulate` runs) take the same steps, lead by lead: the same
transitions by the same rules, the same hand-offs opened in the same queues, the same breaches
with the same steps, the same runs ended in the same states; and two leads said to be one person
(an `identify` event) merged into one, the same way."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Coroutine
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from leadflow.archive.events import EventArchive
from leadflow.db.database import Database
from rules.compile import load_compiled
from rules.identity import lead_key
from rules.models import LeadRef
from rules.simulate import LeadResult, simulate_people
from tests.support.temporal_harness import ROOT, LoopThread, harness, settled, start_lead
from workflows.handoff import HandoffWorkflow
from workflows.lead import LeadWorkflow
from workflows.types import AcceptInput, LeadView, RejectInput

RETENTION = 2 * 86400.0  # short, so leads that end (converted, disqualified) come back within a history
TAIL = 8 * 86400.0  # after the last event: three SLA breaches of 48 h and a retention fit in it
EXAMPLES = int(os.environ.get("LEADFLOW_LIFECYCLE_EXAMPLES", "12"))  # `make soak-lifecycle`: 200
# a time-skipping server holding hundreds of leads' weeks started to fail its RPCs: a fresh one now and then
FRESH_SERVER_EVERY = 20

# (the countries place the leads in time zones for the `manners` variant's delivery manners; no
# rule of the shipped policy reads them)
PROFILES: dict[str, dict[str, Any]] = {
    "hot": {"role": "vp", "budget": 60000, "timeline": "now", "company_size": 300, "country": "US"},
    "enterprise": {"role": "director", "budget": 90000, "timeline": "this-quarter", "company_size": 5000,
                   "country": "JP"},
    "warm": {"role": "manager", "budget": 20000, "timeline": "next-quarter", "company_size": 80,
             "country": "de"},
    "cold": {"role": "analyst", "timeline": "unknown"},
}
# marketing e-mail held for the lead's mornings, one a day, three a week; the cold lead, of no
# country, keeps the policy's zone
MANNERS = ('delivery: {max_per_day: 1, max_per_week: 3, quiet_hours: "20:00-08:00", '
           'timezone: Asia/Kolkata}\n')
BEHAVIOUR = ["page_view", "email_open", "email_click", "content_download", "webinar_attended",
             "form_submit", "reply", "demo_request", "contact_sales", "meeting_booked", "unsubscribe"]
ANSWERS = ["sales_accept", "sales_reject"]
GAPS = [60.0, 3600.0, 6 * 3600.0, 30 * 3600.0, 50 * 3600.0, 5 * 86400.0, 20 * 86400.0, 40 * 86400.0]


def _policy_dirs(root: Path) -> dict[str, Path]:
    """The shipped policy (a breach escalates once, `escalate_to`), the same policy whose
    breaches first pass the task to another rep and then escalate (breach steps), and the
    shipped policy with delivery manners (MANNERS)."""
    dirs = {}
    shipped = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()
    escalate = "  on_breach: {escalate_to: sales-managers}\n"
    assert escalate in shipped
    steps = "  on_breach: {reassign: next, then: {escalate_to: sales-managers}}\n"
    for name, text in (("escalate", shipped), ("steps", shipped.replace(escalate, steps)),
                       ("manners", shipped + MANNERS)):
        folder = root / name
        folder.mkdir(parents=True)
        # room for every task of every history: a task waiting for a free rep looks again every
        # few hours for months, and hundreds of them slow the server's skipping of time
        roster = (ROOT / "policies" / "roster.yaml").read_text()
        (folder / "roster.yaml").write_text(re.sub(r"capacity: \d+", "capacity: 10000", roster))
        (folder / "lead-lifecycle.v1.yaml").write_text(text)
        dirs[name] = folder
    return dirs


class Live:
    """A time-skipping server and a worker for one policy, on an event loop of its own, kept for
    all of one test's examples (each example's leads have addresses of their own)."""

    def __init__(self, home: Path, policy_dir: Path) -> None:
        self._loop = LoopThread(f"lifecycle-{policy_dir.name}")
        self._stack = contextlib.AsyncExitStack()
        self.h = self.run(self._stack.enter_async_context(
            harness(home, policy_dir=policy_dir, final_retention=RETENTION)))
        self.examples = 0

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self._loop.run(coro, timeout=600)

    def close(self) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self._loop.stop()


@pytest.fixture(scope="module")
def lives(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("lifecycle")
    made: dict[str, Live] = {}

    def live(name: str) -> Live:
        if name in made and made[name].examples >= FRESH_SERVER_EVERY:
            made.pop(name).close()
        if name not in made:
            dirs = _policy_dirs(root / "policies") if not (root / "policies").exists() else {
                p.name: p for p in (root / "policies").iterdir()}
            home = root / f"{name}-{len(list(root.glob(name + '-*')))}"
            home.mkdir()
            made[name] = Live(home, dirs[name])
        return made[name]

    yield live
    for one in made.values():
        one.close()


# each lead: its kind of sign-up, then steps of (seconds after the step before, what happens: a
# behaviour event, a sales answer, or nothing, which is silence); and whether the first lead is
# said to be the second's person too, minutes after the second signed up
History = tuple[list[tuple[str, list[tuple[float, str]]]], bool]


@st.composite
def histories(draw: st.DrawFn) -> History:
    """Up to three leads, and maybe a merge of the first two."""
    step = st.tuples(st.sampled_from(GAPS), st.sampled_from([*BEHAVIOUR, *ANSWERS, *ANSWERS, "silence"]))
    leads = [(draw(st.sampled_from(sorted(PROFILES))), draw(st.lists(step, max_size=7)))
             for _ in range(draw(st.integers(1, 3)))]
    merge = len(leads) > 1 and draw(st.booleans())
    if merge:
        # the second lead is quiet until the merge, so it has no hand-off of its own to hand over:
        # one that its merged lead answers later would complete after its parent lead closed,
        # and then the time-skipping server stops skipping time (sdk-java#2392; MERGE_ADOPTS
        # hands one over and leaves it open)
        kind, steps = leads[1]
        leads[1] = (kind, [(3600.0, "silence"), *steps])
    return leads, merge


def _events(history: History, start: datetime, tag: str) -> list[dict[str, Any]]:
    """The history as the archive exports it, in time order. (Leads begin 7 min 13 s apart, so no
    two leads' steps, whole minutes apart, ever coincide: a merged story is in time order.)"""
    leads, merge = history
    events = []
    emails = [f"{tag}-{i}-{kind}@lifecycle.example" for i, (kind, _) in enumerate(leads)]
    if merge:
        first, second = emails[0], emails[1]
        other = lead_key(LeadRef(email=second))
        events.append({"lead_id": lead_key(LeadRef(email=first)), "id": f"{tag}-same", "type": "identify",
                       "at": start + timedelta(minutes=12, seconds=13), "lead": {"email": first},
                       "data": {"same_as": {"email": second},
                                "merge": {"lead_id": other, "running": True, "email": second}}})
    for i, (kind, steps) in enumerate(leads):
        email = emails[i]
        lead_id = lead_key(LeadRef(email=email))
        at = start + timedelta(minutes=7 * i, seconds=13 * i)
        events.append({"lead_id": lead_id, "id": f"{tag}-{i}-0", "type": "signup", "at": at,
                       "lead": {"email": email, **PROFILES[kind]}})
        for n, (gap, what) in enumerate(steps, 1):
            at += timedelta(seconds=gap)
            if what == "silence":
                continue
            data = {"reason": "no budget this year", "by": "ana"} if what == "sales_reject" else {"by": "ana"}
            events.append({"lead_id": lead_id, "id": f"{tag}-{i}-{n}", "type": what, "at": at,
                           "lead": {"email": email}, "data": data if what in ANSWERS else {}})
    events.sort(key=lambda e: e["at"])
    return [{**e, "at": e["at"].isoformat()} for e in events]


async def _live(live: Live, events: list[dict[str, Any]]) -> tuple[dict[str, list[list[str]]], datetime]:
    """Each lead's runs, each run as its steps (see _steps), after the history and its tail; and
    the time then. Each event is sent at its time without its `at`: the lead takes it at the
    moment it arrives, as the intake's events are (a worker's seconds of work would otherwise
    stand between an event's time and the moment its lead decides, which a simulation of the
    history, where both are the event's time, cannot know)."""
    h = live.h
    env, client = h.env, h.client
    handles: dict[str, WorkflowHandle[LeadWorkflow, Any]] = {}
    runs: dict[str, list[list[str]]] = {}
    into: dict[str, str] = {}  # a merged lead: its survivor, where the intake sends its events
    for raw in events:
        at = datetime.fromisoformat(raw["at"])
        ahead = (at - await env.get_current_time()).total_seconds()
        if ahead > 0:
            await env.sleep(ahead)
        lead_id = raw["lead_id"]
        event = {k: v for k, v in raw.items() if k not in ("lead_id", "at")}
        if raw["type"] == "signup":
            handles[lead_id] = await start_lead(client, h.settings.task_queue, lead_id, event)
            continue
        if raw["type"] == "identify":  # as the intake routes it: to the survivor, naming the other
            into[raw["data"]["merge"]["lead_id"]] = lead_id
        lead_id = into.get(lead_id, lead_id)
        handle = handles[lead_id]
        if raw["type"] in ANSWERS:  # as sales would in the inbox: only an open hand-off can be answered
            task = (await settled(handle)).open_handoff
            if task is None:
                continue
            answering = client.get_workflow_handle_for(HandoffWorkflow.run, task)
            if raw["type"] == "sales_accept":
                await answering.execute_update(HandoffWorkflow.accept, AcceptInput(by="ana"))
            else:
                said = RejectInput(reason=raw["data"]["reason"], by="ana")
                await answering.execute_update(HandoffWorkflow.reject, said)
            continue
        try:
            await handle.signal(LeadWorkflow.event, event)
        except RPCError:  # its run ended: the next begins with this event, as the intake does
            runs.setdefault(lead_id, []).append(_steps(await settled(handle)))
            handles[lead_id] = await start_lead(client, h.settings.task_queue, lead_id, event)
    await env.sleep(TAIL)
    for merged in into:  # closed, merged into another: its view as it ended
        await client.get_workflow_handle_for(LeadWorkflow.run, merged).result()
    views = {lead_id: await settled(handle) for lead_id, handle in handles.items()}
    for lead_id, view in views.items():
        runs.setdefault(lead_id, []).append(_steps(view))
    ended = await env.get_current_time()
    # done with: tasks left open would wake for months of every later history's time
    for lead_id, view in views.items():
        # (a task taken over from a merged lead stays: its parent has closed, and a child that
        # ends after its parent stops the time-skipping server's clock, see histories())
        own = view.open_handoff if (view.open_handoff or "").startswith(f"handoff-{lead_id}-") else None
        for workflow_id in (own, lead_id):
            if workflow_id:
                with contextlib.suppress(RPCError):
                    await client.get_workflow_handle(workflow_id).terminate("history compared")
    return runs, ended


def _steps(view: LeadView) -> list[str]:
    """A run's steps as its story tells them: each transition by its rule, each hand-off opened
    and in which queue, each SLA breach and the step it took (who took the task over is the
    roster's business, which a simulation has no part in), and the state it ended in."""
    out = []
    state = view.state
    for line in view.story:
        why = str(line.get("why") or "")
        if line.get("rule"):
            out.append(f"{line['rule']}: {line['from_state']} -> {line['to_state']}")
        elif line.get("event_type") == "sla_breach" and why.startswith("hand-off SLA breached"):
            out.append(_breach(why))
        elif why.startswith("merged into "):
            state = "merged"
        elif _said(why):
            out.append(_said(why))
    return [*out, f"state: {state}"]


def _said(why: str) -> str:
    """A line the lifecycle says about hand-offs, merges and held mail, as both drivers word it
    ("" if none). A held e-mail's slot is left out: where a cap's rolling week ends depends on
    the moment of the e-mail before, which a worker's seconds of work move live."""
    if why.startswith("e-mail ") and (" held until " in why or " skipped: " in why):
        return why.split(" until ")[0].split(":")[0]
    if why.startswith("held e-mail ") and " not sent: " in why:
        return why
    if " opened for queue " in why or why.startswith("hand-off not created") or \
            why.endswith(" is this lead's now") or (why.startswith("hand-off ") and " withdrawn: " in why):
        return why
    if why.startswith("merged with "):
        return why.split(":", 1)[0]
    return ""


def _breach(why: str) -> str:
    if "passed from" in why or "no other rep free" in why:
        return "breach: reassign"
    if "again; still in queue" in why:
        return "breach: none (" + why.rsplit(" ", 1)[-1] + ")"
    return "breach: escalate to " + why.split("escalated to ", 1)[1].split(" (")[0]


def _simulated(result: LeadResult) -> list[list[str]]:
    """The same steps from the simulation, run by run."""
    runs: list[list[str]] = [[]]
    ended = iter(result.endings)
    for _, line in result.lines:
        if line == "run ended":
            runs[-1].append(f"state: {next(ended)}")
        elif line == "run began":
            runs.append([])
        elif line.startswith("hand-off SLA breached"):
            runs[-1].append(_breach(line))
        elif ": " in line and " -> " in line and not line.startswith(("hand-off", "merged")):
            runs[-1].append(line)
        elif _said(line):
            runs[-1].append(_said(line))
    if not runs[-1] or not runs[-1][-1].startswith("state: "):  # the last run has not ended
        runs[-1].append(f"state: {result.state}")
    return runs


def _agree(live: Live, leads: History) -> dict[str, list[list[str]]]:
    """Run the history live and simulated; require the same steps lead by lead; the steps."""
    live.examples += 1
    tag = f"{live.h.settings.policy_dir.name}{live.examples}"
    start = live.run(live.h.env.get_current_time()).astimezone(timezone.utc) + timedelta(minutes=1)
    events = _events(leads, start, tag)
    try:
        runs, until = live.run(_live(live, events))
    except Exception as err:  # the history, to run by hand
        said = "\n".join(f"  {e['lead_id'][-4:]} {e['at']} {e['type']}" for e in events)
        raise AssertionError(f"live run failed ({err!r}) on:\n{said}") from err
    policy = load_compiled(str(live.h.settings.policy_dir / "lead-lifecycle.v1.yaml"))
    # what `leadflow events export` writes, through what `policy simulate` runs
    by_lead: dict[str, list[dict[str, Any]]] = {lead_id: [] for lead_id in runs}
    for raw in EventArchive(Database.of(live.h.settings)).export():
        if raw["lead_id"] in by_lead:
            by_lead[raw["lead_id"]].append(raw)
    results = simulate_people(policy, by_lead, until, retention=RETENTION, trace=True)
    for lead_id in by_lead:
        simulated = _simulated(results[lead_id])
        if runs[lead_id] != simulated:  # the whole history, unshortened, to replay by hand
            history = "\n".join(f"  {r['lead_id'][-4:]} {r['at']} {r['type']} {r.get('data') or ''}"
                                for raws in by_lead.values() for r in raws)
            pytest.fail(f"{lead_id}:\n live {runs[lead_id]}\n  sim {simulated}\nhistory:\n{history}")
    return runs


@pytest.mark.parametrize("variant", ["escalate", "steps", "manners"])
# no shrinking: each try runs workflows for weeks of virtual time; the failure names its history
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(leads=histories())
def test_live_workflows_and_simulation_take_the_same_steps(lives: Any, variant: str, leads: History) -> None:
    _agree(lives(variant), leads)


DAY = 86400.0
# every step the lifecycle has, at least once: a hand-off left to breach three times; one accepted
# (converted, ended after the retention, back as a new run); one rejected and asked for again
# while the first is still open; a lead gone quiet for weeks of nurture checks
EVERY_STEP: History = ([
    ("hot", [(3600.0, "demo_request"), (10 * DAY, "page_view")]),
    ("enterprise", [(3600.0, "contact_sales"), (30 * 3600.0, "sales_accept"), (5 * DAY, "page_view")]),
    ("hot", [(60.0, "demo_request"), (3600.0, "meeting_booked"), (6 * 3600.0, "sales_reject"),
             (DAY, "demo_request")]),
    ("cold", [(40 * DAY, "silence"), (DAY, "email_open")]),
], False)
# the second lead's open hand-off becomes the first's; then it breaches there
MERGE_ADOPTS: History = ([("cold", [(DAY, "email_open")]),
                          ("hot", [(60.0, "demo_request"), (3 * DAY, "page_view")])], True)


def _lines(runs: dict[str, list[list[str]]]) -> list[str]:
    return [line for lead in runs.values() for run in lead for line in run]


@pytest.mark.parametrize("variant", ["escalate", "steps"])
def test_every_step_of_the_lifecycle_is_taken_alike(lives: Any, variant: str) -> None:
    steps = _lines(_agree(lives(variant), EVERY_STEP))
    breaches = {line for line in steps if line.startswith("breach:")}
    if variant == "escalate":  # the policy's one step, then breaches that only record themselves
        assert breaches == {"breach: escalate to sales-managers", "breach: none (sales-managers)"}, steps
    else:
        assert breaches == {"breach: reassign", "breach: escalate to sales-managers",
                            "breach: none (sales-managers)"}, steps
    assert "state: converted" in steps and any(" opened for queue " in line for line in steps), steps
    assert any(line.startswith("hand-off not created") for line in steps) or \
        sum(" opened for queue " in line for line in steps) >= 3, steps
    assert any("-> derailed" in line or "-> nurturing" in line for line in steps), steps


def test_a_merge_is_taken_alike(lives: Any) -> None:
    """(Both leads with a hand-off open, the merged one's withdrawn, is the same code path; on the
    time-skipping server it stops time, see histories().)"""
    adopted = _lines(_agree(lives("escalate"), MERGE_ADOPTS))
    assert any(line.endswith(" is this lead's now") for line in adopted), adopted
    assert "state: merged" in adopted and "breach: escalate to sales-managers" in adopted, adopted
    assert any(line.startswith("merged with ") for line in adopted), adopted
