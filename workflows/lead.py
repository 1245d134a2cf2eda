"""LeadWorkflow: one per lead, months long. Deterministic only: the evaluator runs as a local
activity (its Decision is recorded in history), side effects are activities, time is
workflow.now() and timers."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.delivery import DeliveryResult, EmailRequest
    from activities.evaluation import BatchResult, EvaluateBatch
    from activities.lead import LeadActivities, LinkRequest, MergeRequest
    from leadflow.delivery.links import bounce_id
    from rules import lifecycle
    from rules.identity import identity_of, lead_key, readdress, with_id
    from rules.lifecycle import LeadEnding
    from rules.models import MAX_PROFILE_FIELDS, SIZE_ERRORS, Action, Decision, Event, LeadState, StoryEntry

    # The lead starts its hand-offs and signals them; a hand-off signals its lead: each module
    # takes the other whole and reads the class at call time, so either may be imported first.
    from workflows import delivery, handoff, search
    from workflows.types import (
        CHECKPOINT_RETRY,
        SCORE_POINTS,
        Answer,
        HandoffInput,
        Handover,
        LeadCarry,
        LeadOptions,
        LeadView,
        MergeOrder,
        Note,
        RawEvent,
        Waiting,
        Withdrawal,
    )

# Event ids applied, remembered for idempotency: the newest this many, as digests of SEEN_DIGITS
# hex digits (they travel through continue-as-new: 5,000 of them are under 100 KB, whatever the ids)
SEEN_LIMIT = 5000
SEEN_DIGITS = 16
EVENTS_PER_TASK = 25
# The `event` signal's name; also signal-with-start's (leadflow.intake), which takes only a name.
EVENT_SIGNAL = "event"
# One try of an evaluation; the workflow waits and tries again when it fails outside the policy
# (see _evaluate). Runs from before EVALUATION_WAITS let the activity try five times, then
# rejected the batch.
EVALUATE_TRY = RetryPolicy(maximum_attempts=1, non_retryable_error_types=["PolicyError"])
EVALUATE_TIMEOUT = 60.0
# workflow.patched ids, each asked only where today's code would act otherwise than the code the
# lead's history was recorded with (so histories without the case replay without a marker)
EVALUATION_WAITS = "evaluation-waits"  # a failure outside the policy waits, then tries again
SEEN_WHEN_APPLIED = "seen-when-applied"  # an event id counts as seen once its event was applied
SIZE_CAPS = "size-caps"  # events over rules.models' caps refused; the carried queue bounded
# What the state carried over continue-as-new may hold besides the lead itself (its caps are
# rules.models'): with every bound full it stays under 1 MB, well under Temporal's 2 MB payload
# limit (tests/workflows/test_lead_size.py builds the largest lead the caps allow); without a queue, under
# the SDK's 512 KiB warning.
# the story, as JSON; the oldest lines go first (story_dropped counts them). 500 lines of today's
# shipped policy (about 250 to 400 bytes each) fit.
STORY_BYTES = 200 * 1024
WHY_CHARS = 1000  # a story line's `why`
MATCHED_CHARS = 200  # a text among the values a story line's rule matched
MATCHED_BYTES = 2000  # those values together, as JSON
# queued events carried to the next run (thousands of ordinary ones); more are evaluated first
PENDING_BYTES = 512 * 1024
EARLIER_LIMIT = 3  # how the lead's earlier runs ended: the newest this many
EARLIER_STORY = 5  # lines of each earlier run's story kept
# each failed try of an evaluation outside the policy, by reason (the error's type: ArchiveError,
# EngineError, timeout, ...)
EVALUATION_RETRIES = ("leadflow_evaluation_retries",
                      "Evaluations of a lead's events that failed outside the policy and are tried again, "
                      "by reason")


def seen_key(event_id: str) -> str:
    """What the lead remembers of an applied event's id."""
    return hashlib.sha256(event_id.encode()).hexdigest()[:SEEN_DIGITS]


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


def fit_entry(entry: StoryEntry) -> StoryEntry:
    """A story line within bounds: a long `why` and long matched values shortened (the policy
    decides what a rule matches, which may be a profile field's 1,000 characters or a page path's
    10,000), so hundreds of lines stay small enough to carry."""
    matched = entry.matched
    if matched and json_size(matched) > MATCHED_BYTES:
        matched = {k: _short(v, MATCHED_CHARS) if isinstance(v, str) else v for k, v in matched.items()}
        if json_size(matched) > MATCHED_BYTES:
            kept: dict[str, Any] = {}
            for k, v in matched.items():
                if json_size({**kept, k: v}) > MATCHED_BYTES - 40:
                    kept["…"] = f"{len(matched) - len(kept)} more left out"
                    break
                kept[k] = v
            matched = kept
    if matched is entry.matched and len(entry.why) <= WHY_CHARS:
        return entry
    return replace(entry, why=_short(entry.why, WHY_CHARS), matched=matched)


def bounded_earlier(earlier: list[LeadEnding]) -> list[LeadEnding]:
    return [e.model_copy(update={"story": e.story[-EARLIER_STORY:]}) for e in earlier[-EARLIER_LIMIT:]]


def _failure(err: FailureError) -> tuple[str, str, bool]:
    """Why an evaluation failed: (kind, reason, whether the policy is at fault). Only a
    non-retryable failure is the policy's (activities.evaluation.PolicyError); the database, the
    evaluator processes, a timeout, a worker that went away are infrastructure. (A local
    activity's failure reaches the workflow as the activity's own error, not in an ActivityError.)"""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        kind, text = cause.type or "ApplicationError", cause.message
        policy = cause.non_retryable or kind == "PolicyError"
    elif isinstance(cause, ActivityTimeout):
        kind, text, policy = "timeout", f"the evaluation did not finish within {EVALUATE_TIMEOUT:g} s", False
    else:
        kind, text, policy = type(cause).__name__ if cause else "ActivityError", str(cause or err), False
    return kind, _short((text.strip().splitlines() or [kind])[0], 300), policy


def score_index_delay(key: str, seconds: float) -> timedelta:
    """How long a score-only change waits to be indexed: every search-attribute upsert is a
    visibility write on the server (per event, on the dev server's SQLite, it doubled the
    event-to-state latency). Between one and two times `seconds`, fixed per lead, so leads whose
    scores change together (a campaign goes out) index apart, not in one burst of workflow
    tasks and visibility writes a minute later."""
    share = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    return timedelta(seconds=seconds * (1 + share))


async def _signal(sending: Awaitable[None]) -> bool:
    """Signal another workflow of a merge; one that has closed meanwhile has nothing to be told
    (a failed signal must not fail this workflow's task, which would retry it for ever)."""
    try:
        await sending
    except Exception:  # noqa: BLE001
        return False
    return True


def _lead(workflow_id: str) -> workflow.ExternalWorkflowHandle[LeadWorkflow]:
    """Another lead (one merging with this one), to signal."""
    return workflow.get_external_workflow_handle_for(LeadWorkflow.run, workflow_id)


def _task(workflow_id: str) -> workflow.ExternalWorkflowHandle[handoff.HandoffWorkflow]:
    """A hand-off task of this lead, to signal."""
    return workflow.get_external_workflow_handle_for(handoff.HandoffWorkflow.run, workflow_id)


def _identity(ref: dict[str, Any]) -> dict[str, Any]:
    return {k: ref[k] for k in ("email", "external_id") if isinstance(ref.get(k), str) and ref[k]}


def _who(ref: dict[str, Any]) -> str:
    return str(ref.get("email") or ref.get("external_id") or "")


@workflow.defn(name="LeadWorkflow", sandboxed=False)
class LeadWorkflow:
    def __init__(self) -> None:
        self.c = LeadCarry()
        self.options = LeadOptions()
        self.key = ""
        self.run_events = 0
        self._seen: dict[str, None] = {}  # insertion-ordered, so the oldest ids go first
        self._answers: dict[str, Answer] = {}
        self._tickets = 0
        # One timer wakes the loop for the next due check or score index; see _arm.
        self._alarm: asyncio.Task[None] | None = None
        self._alarm_at: datetime | None = None
        self._woke = False
        self._indexed: tuple[str | None, float | None] = (None, None)
        self._index_score_at: datetime | None = None
        self._sending: set[asyncio.Task[None]] = set()  # e-mails on their way
        self._real_delivery = True
        self._merging_into: str | None = None  # this lead is merged into that one: hand over, end
        self._absorbed: dict[str, Handover] = {}  # what merged leads handed over, by id
        self._inflight: set[str] = set()  # seen keys of the events being evaluated, not yet applied
        self._story_sizes: list[int] = []  # bytes of each story line, as JSON
        self._run_tries = 0  # evaluations of this run that failed outside the policy
        self._carry_over = False  # events wait for an evaluation: take them to the next run
        self._draining = False  # due to continue as new, the queue too long to carry

    @workflow.run
    async def run(self, event: RawEvent | None, options: LeadOptions | None = None,
                  carry: LeadCarry | None = None) -> LeadEnding | None:
        self.key = workflow.info().workflow_id
        # asked first thing, so the marker of a new run is always its first command, whatever
        # the timing of its first send (see delivery.legacy)
        self._real_delivery = workflow.patched(delivery.REAL_DELIVERY)
        # validated here: the converter leaves Optional run arguments as plain dicts
        self.options = LeadOptions.model_validate(options) if options else LeadOptions()
        if carry is not None:
            self.c = LeadCarry.model_validate(carry)
            # ids as runs before the digests carried them, then digests
            self._seen = dict.fromkeys([*map(seen_key, self.c.seen), *self.c.seen_keys])
            self.c.seen = []
            # within today's bounds, whatever the run before carried
            self.c.story = [fit_entry(s) for s in self.c.story]
            self._story_sizes = [json_size(asdict(s)) for s in self.c.story]
            self._add_story([])
            self.c.earlier = bounded_earlier(self.c.earlier)
        elif event is not None:  # None when started by an update that brings the sign-up
            self.c.pending.insert(0, {"raw": event})
        while True:
            if self._merging_into is not None:
                return await self._hand_over(self._merging_into)
            if not self.c.pending:
                await self._wait_for_event_or_alarm()
                if self._merging_into is not None:
                    continue
            self._due_work()
            await self._release()
            handled = 0
            while self.c.pending and not self._ready_to_continue_as_new():
                room = min(EVENTS_PER_TASK - handled, self.options.max_events_per_run - self.run_events)
                if self._draining:  # due to continue as new, with more queued than it may carry
                    room = EVENTS_PER_TASK - handled
                batch = self.c.pending[:max(1, room)]
                del self.c.pending[:len(batch)]
                await self._process_batch(batch)
                handled += len(batch)
                self._index()
                if handled >= EVENTS_PER_TASK and self.c.pending:
                    await self._end_workflow_task()
                    handled = 0
            if self._ending_due():
                # what is under way belongs to this run: an e-mail, an update's answer
                await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not self._sending)
                if self._ending_due():
                    return await self._end()
                continue
            if self._ready_to_continue_as_new():
                # a delivery still on its way belongs to this run: wait for its answer
                await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not self._sending)
                if not self._ready_to_continue_as_new():
                    continue
                self._index(now=True)
                # queued signal events travel in the carry; none has an update waiting on it
                self.c.seen_keys = list(self._seen)[-SEEN_LIMIT:]  # newest last
                self.c.runs += 1
                # the sign-up that started the first run is the carry's business no more
                workflow.continue_as_new(args=[None, self.options, self.c])

    # -- intake ------------------------------------------------------------------------------

    @workflow.signal(name=EVENT_SIGNAL)
    def event(self, raw: RawEvent) -> None:
        self.c.pending.append({"raw": raw})

    @workflow.signal(name="note")
    def note(self, note: Note) -> None:
        """A line for the story from elsewhere (a hand-off's CRM delivery that failed)."""
        self._say(note.why, note.type)

    @workflow.signal(name="merge_into")
    def merge_into(self, order: MergeOrder) -> None:
        """Another lead is this person too and takes this one over (an `identify` event)."""
        survivor = order.survivor
        if survivor and survivor != self.key and self._merging_into is None:
            self._merging_into = survivor

    @workflow.signal(name="absorb")
    def absorb(self, handed: Handover) -> None:
        """What a lead merged into this one hands over: its story, its open hand-off, ids seen."""
        self._absorbed[handed.lead_id] = handed

    @workflow.update(name="submit")
    async def submit(self, raw: RawEvent) -> Answer:
        """Like the `event` signal, but answers with what the event did (the Decision)."""
        self._tickets += 1
        ticket = f"u{self._tickets}"
        self.c.pending.append({"raw": raw, "ticket": ticket})
        await workflow.wait_condition(lambda: ticket in self._answers)
        return self._answers.pop(ticket)

    @workflow.query(name="state")
    def state(self) -> LeadView:
        lead = self.c.lead
        return LeadView(
            lead_id=self.key,
            state=lead.state if lead else None,
            policy=lead.policy if lead else None,
            version=lead.version if lead else None,
            scores=self.c.scores.model_dump(),
            facts=dict(lead.facts) if lead else {},
            profile=dict(lead.profile) if lead else {},
            track=asdict(lead.track) if lead and lead.track else None,
            open_handoff=self.c.open_handoff,
            next_check_at=self.c.next_check_at.isoformat() if self.c.next_check_at else None,
            events=self.c.events,
            rejected=self.c.rejected,
            runs=self.c.runs,
            story=[asdict(s) for s in self.c.story],
            story_dropped=self.c.story_dropped,
            score_history=[list(point) for point in self.c.score_history],
            recent=[{"type": t, "at": at} for t, at in lead.recent] if lead else [],
            bant=list(lead.bant) if lead else [],
            final_since=self.c.final_since.isoformat() if self.c.final_since else None,
            ends_at=ends.isoformat() if (ends := lifecycle.ends_at(self.c)) else None,
            earlier=[e.model_dump(mode="json") for e in self.c.earlier],
            aliases=list(self.c.aliases),
            waiting=self.c.waiting.says() if self.c.waiting else None,
            held=[{"content": h.action.content, "until": h.due.isoformat()} for h in self.c.held],
        )

    # -- the loop ----------------------------------------------------------------------------

    async def _wait_for_event_or_alarm(self) -> None:
        self._arm()
        await workflow.wait_condition(
            lambda: bool(self.c.pending) or self._woke or self._merging_into is not None)
        self._woke = False

    def _arm(self) -> None:
        """Keep one timer for the earliest of the next check, the next score index, the run's end
        and the next held e-mail's slot.
        A waiting timer that is due no later than needed stays: a check due date moves with
        every event, and a new timer per event (start, then cancel) doubled the history."""
        dues = [d for d in (self.c.next_check_at, self._index_score_at, lifecycle.ends_at(self.c),
                            lifecycle.next_release(self.c)) if d is not None]
        if not dues:
            return
        due = min(dues)
        if self._alarm is not None and not self._alarm.done() and self._alarm_at is not None \
                and self._alarm_at <= due:
            return
        if self._alarm is not None:
            self._alarm.cancel()
        seconds = (due - workflow.now()).total_seconds()
        if seconds <= 0:
            self._alarm, self._alarm_at, self._woke = None, None, True
            return
        self._alarm, self._alarm_at = asyncio.create_task(self._ring(seconds)), due

    async def _ring(self, seconds: float) -> None:
        await workflow.sleep(seconds)
        self._woke = True

    def _ending_due(self) -> bool:
        ends = lifecycle.ends_at(self.c)
        return ends is not None and not self.c.pending and workflow.now() >= ends

    async def _end(self) -> LeadEnding:
        """Complete the run: how it ended goes to the shared database (the lead's next run reads
        it there, long after Temporal has let go of this one) and is the workflow's result."""
        lead = self.c.lead
        assert lead is not None and self.c.final_since is not None
        moved = next((s for s in reversed(self.c.story)
                      if s.to_state == lead.state and s.from_state != s.to_state), None)
        ending = LeadEnding(
            lead_id=self.key, run_id=workflow.info().run_id, state=lead.state, since=self.c.final_since,
            ended_at=workflow.now(), why=moved.why if moved else f"reached {lead.state}",
            rule=moved.rule if moved else None, policy=lead.policy, version=lead.version,
            events=self.c.events, story=self.c.story[-20:])
        self._index(now=True)
        await workflow.execute_local_activity_method(
            LeadActivities.record_ending, ending, retry_policy=CHECKPOINT_RETRY,
            start_to_close_timeout=timedelta(seconds=30))
        return ending

    def _due_work(self) -> None:
        """What the clock asks for: the scheduled check (an event like any other), and the
        deferred score index."""
        now = workflow.now()
        if self._index_score_at is not None and now >= self._index_score_at:
            self._index(now=True)
        if (check := lifecycle.due_check(self.c, now)) is not None:
            self.c.pending.append({"raw": check, "check": True})

    def _index(self, now: bool = False) -> None:
        """Upsert the lead's search attributes: at once when its state changed (or when `now`),
        else a changed score waits (see score_index_delay)."""
        lead = self.c.lead
        if not self.options.index or lead is None:
            return
        current = (lead.state, float(self.c.scores.total))
        if current == self._indexed:
            self._index_score_at = None
            return
        if now or current[0] != self._indexed[0]:
            workflow.upsert_search_attributes([search.LEAD_STATE.value_set(current[0]),
                                               search.LEAD_SCORE.value_set(current[1])])
            self._indexed, self._index_score_at = current, None
        elif self._index_score_at is None:
            self._index_score_at = workflow.now() + score_index_delay(
                self.key, self.options.score_index_seconds)

    async def _end_workflow_task(self) -> None:
        """Every local activity result of one workflow task goes into one completion, which a
        burst of queued signals would push past gRPC's 4 MB; so end the task now and then.
        A no-op activity does it in one round trip (a short timer waits for the server's timer
        granularity, about a second on the dev server)."""
        await workflow.execute_activity_method(LeadActivities.checkpoint, retry_policy=CHECKPOINT_RETRY,
                                               start_to_close_timeout=timedelta(seconds=30))

    def _ready_to_continue_as_new(self) -> bool:
        due = (self._carry_over or workflow.info().is_continue_as_new_suggested()
               or self.run_events >= self.options.max_events_per_run)
        self._draining = False
        # an update waits in this run for its event's answer, so its event is handled here
        if not due or any(item.get("ticket") for item in self.c.pending):
            return False
        # what is queued travels in the carry: a long queue is evaluated here first
        self._draining = not self._carry_over and json_size(self.c.pending) > PENDING_BYTES \
            and workflow.patched(SIZE_CAPS)
        return not self._draining

    def _admit(self, item: dict[str, Any]) -> tuple[Event, Any] | str | None:
        """Validate and de-duplicate one queued item: the event, why it is refused, or None
        when it was a duplicate (answered already)."""
        raw, ticket = item.get("raw"), item.get("ticket")
        try:
            event = Event.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            uncapped = self._uncapped(raw) if first["type"] in SIZE_ERRORS else None
            if uncapped is None:
                where = ".".join(str(p) for p in first["loc"]) or "event"
                return f"malformed event: {where}: {first['msg']}"
            event = uncapped
        identified = event.lead.email or event.lead.external_id
        if identified and lead_key(event.lead) != self.key:
            merge = event.data.get("merge") if event.type == "identify" else None
            known = {a.get("lead_id") for a in self.c.aliases}
            if not (isinstance(merge, dict) and merge.get("lead_id") == lead_key(event.lead)) \
                    and lead_key(event.lead) not in known:
                return "event is for another lead"
            # an id merged into this lead: the event is this lead's, under its own address
            own = identity_of(self.c.lead.profile) if self.c.lead else {}
            event = Event.model_validate(readdress(event.model_dump(mode="json", exclude_none=True), own))
        event = with_id(event)
        if not item.get("check"):
            event_id = event.id or ""  # with_id gave it one
            key = seen_key(event_id)
            if key in self._seen or key in self._inflight:
                self._answer(ticket, {"duplicate": True, "event_id": event_id})
                return None
            if (refused := self._overfills(event)) is not None:
                return refused
            # counted as seen once applied (_applied): an event that could not be is no duplicate
            self._inflight.add(key)
        return event, ticket

    def _uncapped(self, raw: Any) -> Event | None:
        """An event over the size caps, as a history from before them took it (replay only)."""
        if workflow.patched(SIZE_CAPS):
            return None
        try:
            return Event.model_validate(raw, context={"uncapped": True})
        except ValidationError:
            return None

    def _overfills(self, event: Event) -> str | None:
        """Why the event would give the lead more profile fields than the caps allow, or None."""
        lead = self.c.lead
        fields = set(event.lead.model_extra or {})
        if lead is not None:
            fields |= {k for k in lead.profile if k not in ("email", "external_id")}
        if len(fields) <= MAX_PROFILE_FIELDS or not workflow.patched(SIZE_CAPS):
            return None
        return (f"lead: the lead would have {len(fields)} profile fields with this event's; "
                f"at most {MAX_PROFILE_FIELDS} besides email and external_id")

    def _applied(self, event: Event) -> None:
        """The event is the lead's now: a re-send of its id is a duplicate."""
        key = seen_key(event.id or "")
        self._inflight.discard(key)
        self._seen[key] = None
        if len(self._seen) > SEEN_LIMIT:
            del self._seen[next(iter(self._seen))]

    def _not_applied(self, event: Event) -> None:
        """The event was rejected: a re-send is evaluated again (runs from before counted it
        seen when it arrived)."""
        if workflow.patched(SEEN_WHEN_APPLIED):
            self._inflight.discard(seen_key(event.id or ""))
        else:
            self._applied(event)

    async def _process_batch(self, items: list[dict[str, Any]]) -> None:
        """Evaluate queued events in order in one local activity (one round trip, not one per
        event); each event sees the lead as the previous one left it. Then apply each Decision.
        Events whose evaluation keeps failing outside the policy for long go back to the queue,
        with those after them, and the lead continues as new (see _evaluate)."""
        admitted: list[tuple[Event, Any]] = []
        taken: list[dict[str, Any]] = []  # the queued items of `admitted`
        for n, item in enumerate(items):
            outcome = self._admit(item)
            if isinstance(outcome, str):  # keep the story in arrival order
                if not await self._evaluate(admitted, items[n:]):
                    return self._requeue(taken + items[n:])
                admitted, taken = [], []
                self._answer(item.get("ticket"), self._reject(item.get("raw"), outcome))
            elif outcome is not None:
                event = outcome[0]
                if event.type == "identify" and isinstance(event.data.get("merge"), dict):
                    if not await self._evaluate(admitted, items[n:]):  # what came before it, first
                        return self._requeue(taken + items[n:])
                    admitted, taken = [], []
                    await self._merge(event)
                admitted.append(outcome)
                taken.append(item)
        if not await self._evaluate(admitted, []):
            self._requeue(taken)

    def _requeue(self, items: list[dict[str, Any]]) -> None:
        """Put items back at the head of the queue, unseen, for the next run."""
        self.c.pending[:0] = items
        self._inflight.clear()

    async def _evaluate(self, admitted: list[tuple[Event, Any]], rest: list[dict[str, Any]]) -> bool:
        """Evaluate and apply; False when the events should rather wait in the next run.

        A failure outside the policy (the database, the evaluators, a timeout) loses nothing: the
        lead says it waits (`waiting` in its state), counts the try (leadflow_evaluation_retries)
        and tries again 1, 2, 4 ... up to `evaluation_retry_cap` seconds later, without end; after
        `evaluation_tries_per_run` tries (or when Temporal suggests it) the events, with `rest`
        after them, go to the next run, unless an update waits on one. Only a failure of the
        policy (PolicyError, non-retryable) rejects the batch."""
        if not admitted:
            return True
        self.run_events += len(admitted)
        lead = self.c.lead
        request = EvaluateBatch(lead=lead, events=[e for e, _ in admitted], now=workflow.now(),
                                version=lead.version if lead else None)
        while True:
            try:
                result: BatchResult = await workflow.execute_local_activity_method(
                    LeadActivities.evaluate_events, request,
                    start_to_close_timeout=timedelta(seconds=EVALUATE_TIMEOUT), retry_policy=EVALUATE_TRY)
                break
            except FailureError as err:
                if is_cancelled_exception(err):
                    raise
                kind, reason, policy = _failure(err)
                if not workflow.patched(EVALUATION_WAITS):
                    # runs from before: an ActivityError rejected the batch, any other failure
                    # (an ArchiveError, say, after five tries) failed the whole workflow
                    if not isinstance(err, ActivityError):
                        raise
                    cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err)
                    policy, reason = True, cause
                if policy:
                    for event, ticket in admitted:
                        self._not_applied(event)
                        self._answer(ticket, self._reject(event.model_dump(mode="json"),
                                                          f"policy error: {reason}"))
                    self._recovered()
                    return True
                delay = self._wait(kind, reason)
                if self._should_carry_over(admitted, rest):
                    workflow.logger.warning("lead %s: %d events wait for the next run: %s", self.key,
                                            len(admitted) + len(rest), reason)
                    self._carry_over = True
                    return False
                await workflow.sleep(delay)
        self._recovered()
        if result.retention is not None:
            self.c.retention = result.retention
        merged = result.earlier[-1].merged_into if result.earlier and self.c.lead is None else None
        if merged:  # this id was merged into another lead: its events belong there
            for event, ticket in admitted:
                self._applied(event)
                await self._forward(merged, event.model_dump(mode="json", exclude_none=True), ticket)
            self.c.earlier = bounded_earlier(result.earlier)
            self._merging_into = merged
            return True
        if result.earlier and not self.c.earlier:
            self.c.earlier = bounded_earlier(result.earlier)
            last = result.earlier[-1]
            self._say(f"this address ended before: {last.state} on {last.since.date().isoformat()} "
                      f"({last.why}); a new run begins", "earlier")
        decisions = result.full(request.lead)
        for (event, ticket), decision, error in zip(admitted, decisions, result.errors, strict=True):
            if decision is None:
                self._not_applied(event)
                self._answer(ticket, self._reject(event.model_dump(mode="json"), f"policy error: {error}"))
                continue
            self._applied(event)
            await self._apply(decision, event)
            self.c.events += 1  # counted once applied, so a reader of `events` sees its effects
            if ticket is not None:
                self._answer(ticket, decision.model_dump(mode="json", exclude={"lead"}))
        return True

    def _wait(self, kind: str, reason: str) -> float:
        """Record a failed try outside the policy; the seconds until the next one."""
        self._run_tries += 1
        waiting = self.c.waiting
        if waiting is None:
            waiting = self.c.waiting = Waiting(since=workflow.now(), reason=reason)
            workflow.logger.warning("lead %s: evaluation failed outside the policy, retrying: %s",
                                    self.key, reason)
        waiting.reason = reason
        waiting.tries += 1
        workflow.metric_meter().create_counter(*EVALUATION_RETRIES).add(1, {"reason": kind})
        return float(min(self.options.evaluation_retry_cap, 2.0 ** min(waiting.tries - 1, 20)))

    def _recovered(self) -> None:
        if self.c.waiting is not None:
            workflow.logger.info("lead %s: evaluation works again after %d failed tries since %s",
                                 self.key, self.c.waiting.tries, self.c.waiting.since.isoformat())
            self.c.waiting = None

    def _should_carry_over(self, admitted: list[tuple[Event, Any]], rest: list[dict[str, Any]]) -> bool:
        """Whether the waiting events should go on waiting in the next run: this one has tried
        long enough (its history grows with every try), nobody's update waits on one of them, and
        they fit in the carry."""
        if self._run_tries < self.options.evaluation_tries_per_run \
                and not workflow.info().is_continue_as_new_suggested():
            return False
        if any(t is not None for _, t in admitted) or any(i.get("ticket") for i in (*rest, *self.c.pending)):
            return False
        queued = [e.model_dump(mode="json", exclude_none=True) for e, _ in admitted]
        return json_size([queued, rest, self.c.pending]) <= PENDING_BYTES

    async def _apply(self, decision: Decision, event: Event) -> None:
        """Take the Decision into the lead (rules.lifecycle) and do what the lifecycle asks."""
        acts = lifecycle.apply(self.c, decision, event.type, event.data, self.key)
        self._add_story(decision.story)
        if decision.rejected is not None:
            return
        s = decision.scores
        self.c.score_history.append((decision.at.isoformat(), s.fit, s.interest, s.intent, s.total))
        del self.c.score_history[:-SCORE_POINTS]
        for act in acts:
            if isinstance(act, lifecycle.Say):
                self._note(event, act.why)
            elif isinstance(act, lifecycle.OpenTask):
                await self._open_handoff(act, decision)
            else:
                await self._deliver(act.action, decision.lead)

    async def _release(self) -> None:
        """Send the held e-mails whose slot has come (rules.lifecycle.release); none is held
        under a policy without `delivery:`, so its leads do here what they always did."""
        if not self.c.held or self.c.lead is None:
            return
        for act in lifecycle.release(self.c, workflow.now()):
            if isinstance(act, lifecycle.Deliver):
                await self._deliver(act.action, self.c.lead)
            elif isinstance(act, lifecycle.Say):
                self._say(act.why, "delivery")

    async def _deliver(self, action: Action, lead: LeadState) -> None:
        request = None
        if action.kind == "send" and action.content:
            request = EmailRequest(key=action.key, lead=self.key, content=action.content,
                                   to=lead.profile.get("email"), profile=dict(lead.profile),
                                   withheld=action.withheld)
        if not self._real_delivery:  # a run from before: see delivery.legacy
            await delivery.legacy(action.kind, action.key, self.key, request)
            return
        if request is not None:
            task = asyncio.create_task(self._mail(request))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _mail(self, request: EmailRequest) -> None:
        """Send one e-mail and act on how it ended: a hard bounce comes back as an event (the
        policy derails the lead, the evaluator stops its mail for good); what did not go out is
        said in the story."""
        result: DeliveryResult = await delivery.send_email(request, self.options.delivery_timeout)
        if result.status == "bounced":
            self.c.pending.append({"raw": {
                "id": bounce_id(request.key), "type": "email_bounce",
                "at": workflow.now().isoformat(),
                "data": {"hard": True, "content": request.content, "reason": result.detail}}})
        elif result.status in ("failed", "suppressed"):
            what = "not sent" if result.status == "suppressed" else "failed"
            self._say(f"e-mail {request.content} {what}: {result.detail}", "delivery")

    async def _open_handoff(self, opening: lifecycle.OpenTask, decision: Decision) -> None:
        task = HandoffInput(
            lead_workflow_id=self.key, lead_email=decision.lead.profile.get("email"),
            queue=opening.queue, sla_seconds=opening.sla_seconds, escalate_to=opening.escalate_to,
            reason=opening.reason, policy=decision.policy, version=decision.version,
            lead_story=self._story_for_sales(decision), index=self.options.index,
            delivery_timeout=self.options.delivery_timeout, route=opening.route,
            breach_steps=opening.breach_steps, routing_retry=self.options.routing_retry)
        await workflow.start_child_workflow(
            handoff.HandoffWorkflow.run, task, id=opening.task_id, task_queue=workflow.info().task_queue,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON)

    # -- merging ---------------------------------------------------------------------------

    async def _merge(self, event: Event) -> None:
        """This lead takes another one over: from now on events for the other's ids come here
        (the alias is written first), the other hands over and ends, and this lead becomes what
        both leads' events make it, replayed in time order by its policy. Never two open
        hand-offs: the other's is passed to this lead, or withdrawn when this one has its own."""
        merge = event.data["merge"]
        other = str(merge["lead_id"])
        if other == self.key or other in {a.get("lead_id") for a in self.c.aliases}:
            self._note(event, f"already one lead with {_who(merge) or other}")
            return
        now = workflow.now()
        await workflow.execute_local_activity_method(
            LeadActivities.link_alias,
            LinkRequest(aliases=[other], lead=self.key, at=now, event_id=event.id or ""),
            start_to_close_timeout=timedelta(seconds=30), retry_policy=CHECKPOINT_RETRY)
        handed: Handover | None = None
        if merge.get("running"):
            try:
                await _lead(other).signal(LeadWorkflow.merge_into,
                                          MergeOrder(survivor=self.key, event_id=event.id))
                await workflow.wait_condition(lambda: other in self._absorbed, timeout=timedelta(minutes=5))
                handed = self._absorbed.pop(other)
            except Exception:  # noqa: BLE001 - closed meanwhile: its archive and ending say enough
                handed = None
        lead = self.c.lead
        before = (lead.state if lead else "captured", self.c.scores.model_copy())
        result = await workflow.execute_activity_method(
            LeadActivities.merge_leads, MergeRequest(survivor=self.key, other=other,
                                                     identity=identity_of(lead.profile) if lead else {},
                                                     version=lead.version if lead else None, now=now),
            start_to_close_timeout=timedelta(minutes=5))
        if result.lead is not None and result.scores is not None:
            self.c.lead, self.c.scores = result.lead, result.scores
        theirs = handed.open_handoff if handed else None
        if theirs and self.c.open_handoff:
            await _signal(_task(theirs).signal(handoff.HandoffWorkflow.withdraw, Withdrawal(
                reason=f"merged into {self.key}: its task {self.c.open_handoff} stays")))
            self._note(event, f"hand-off {theirs} of {_who(merge) or other} withdrawn: "
                       f"{self.c.open_handoff} is this person's task")
        elif theirs:
            self.c.open_handoff = theirs
            self._note(event, f"hand-off {theirs} of {_who(merge) or other} is this lead's now")
        story = list(handed.story) if handed else list(result.other_story)
        self.c.story = sorted([*self.c.story, *map(fit_entry, story)], key=lambda s: s.at)
        self._story_sizes = [json_size(asdict(s)) for s in self.c.story]
        self._add_story([])  # within the bounds again
        theirs_seen = [*map(seen_key, handed.seen), *handed.seen_keys] if handed else []
        self._seen.update(dict.fromkeys(theirs_seen))
        while len(self._seen) > SEEN_LIMIT:
            del self._seen[next(iter(self._seen))]
        self.c.aliases = [*self.c.aliases, {"lead_id": other, **_identity(merge), "at": now.isoformat()},
                          *(handed.aliases if handed else [])]
        self.c.received = sorted({*self.c.received, *result.received})
        self.c.events += (handed.events if handed else 0) or result.other_events
        if self.c.lead is not None:
            self.c.lead = self.c.lead.model_copy(update={"handoff_open": self.c.open_handoff is not None})
        s = self.c.scores
        state = self.c.lead.state if self.c.lead else before[0]
        self._note(event, f"merged with {_who(merge) or other}: {result.other_events} of its events joined "
                          f"this lead's; scores recomputed from both (fit {before[1].fit:g} -> {s.fit:g}, "
                          f"intent {before[1].intent:g} -> {s.intent:g}, total {before[1].total:g} -> "
                          f"{s.total:g}); {before[0]} -> {state}")
        self.c.score_history.append((now.isoformat(), s.fit, s.interest, s.intent, s.total))
        if self.c.open_handoff is None and result.handoff is not None and result.decision is not None:
            for act in lifecycle.open_handoff(self.c, result.handoff, self.key):
                if isinstance(act, lifecycle.OpenTask):
                    await self._open_handoff(act, result.decision)
                elif isinstance(act, lifecycle.Say):
                    self._note(event, act.why)
        self._index(now=True)

    async def _hand_over(self, survivor: str) -> LeadEnding:
        """Merged into `survivor`: hand it the story, the open hand-off and the ids seen; pass on
        whatever is queued; end, pointing there."""
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not self._sending)
        lead = self.c.lead
        if self.c.open_handoff is not None:  # its answer goes to the survivor from now on
            await _signal(_task(self.c.open_handoff).signal(handoff.HandoffWorkflow.relink, survivor))
        await _signal(_lead(survivor).signal(LeadWorkflow.absorb, Handover(
            lead_id=self.key, story=list(self.c.story), open_handoff=self.c.open_handoff,
            seen_keys=list(self._seen)[-SEEN_LIMIT:], aliases=self.c.aliases, events=self.c.events,
            identity=identity_of(lead.profile) if lead else {})))
        for item in self.c.pending:
            await self._forward(survivor, item.get("raw"), item.get("ticket"))
        self.c.pending = []
        self._say(f"merged into {survivor}: events for this address go there now", "identify")
        ending = LeadEnding(
            lead_id=self.key, run_id=workflow.info().run_id, state="merged", since=workflow.now(),
            ended_at=workflow.now(), why=f"merged into {survivor}", policy=lead.policy if lead else "",
            version=lead.version if lead else 0, events=self.c.events, story=self.c.story[-20:],
            merged_into=survivor)
        await workflow.execute_local_activity_method(
            LeadActivities.record_ending, ending, retry_policy=CHECKPOINT_RETRY,
            start_to_close_timeout=timedelta(seconds=30))
        return ending

    async def _forward(self, survivor: str, raw: RawEvent, ticket: str | None) -> None:
        await _signal(_lead(survivor).signal(LeadWorkflow.event, raw))
        self._answer(ticket, {"merged_into": survivor})

    # -- the story ---------------------------------------------------------------------------

    def _story_for_sales(self, decision: Decision) -> dict[str, Any]:
        lead = decision.lead
        return {
            "profile": dict(lead.profile), "facts": dict(lead.facts),
            "scores": decision.scores.model_dump(), "bant": list(lead.bant),
            "fired": [f.rule for f in decision.fired if f.kind in ("stage", "handoff")],
            "recent_activity": [{"type": t, "at": at} for t, at in lead.recent],
            # _apply has added this Decision's lines to the lead's story already
            "story": [asdict(s) for s in self.c.story[-10:]],
        }

    def _add_story(self, entries: list[StoryEntry]) -> None:
        """Add lines (each within bounds); the oldest go while the story holds more than
        `story_limit` lines or STORY_BYTES (the newest line always stays)."""
        fitted = [fit_entry(e) for e in entries]
        self.c.story.extend(fitted)
        self._story_sizes.extend(json_size(asdict(e)) for e in fitted)
        extra = max(0, len(self.c.story) - self.options.story_limit)
        total = sum(self._story_sizes[extra:])
        while total > STORY_BYTES and extra < len(self.c.story) - 1:
            total -= self._story_sizes[extra]
            extra += 1
        if extra > 0:
            del self.c.story[:extra]
            del self._story_sizes[:extra]
            self.c.story_dropped += extra

    def _say(self, why: str, event_type: str) -> None:
        lead = self.c.lead
        state = lead.state if lead else "captured"
        self._add_story([StoryEntry(
            at=workflow.now().isoformat(), event_id=None, event_type=event_type, from_state=state,
            to_state=state, rule=None, policy=lead.policy if lead else "",
            version=lead.version if lead else 0, why=why)])

    def _note(self, event: Event, why: str) -> None:
        lead = self.c.lead
        state = lead.state if lead else "captured"
        self._add_story([StoryEntry(
            at=workflow.now().isoformat(), event_id=event.id, event_type=event.type,
            from_state=state, to_state=state, rule=None, policy=lead.policy if lead else "",
            version=lead.version if lead else 0, why=why)])

    def _reject(self, raw: RawEvent, reason: str) -> Answer:
        self.c.rejected += 1
        lead = self.c.lead
        state = lead.state if lead else "captured"
        kind = sent if isinstance(raw, dict) and isinstance(sent := raw.get("type"), str) else "?"
        event_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        self._add_story([StoryEntry(
            at=workflow.now().isoformat(), event_id=event_id, event_type=kind, from_state=state,
            to_state=state, rule=None, policy=lead.policy if lead else "",
            version=lead.version if lead else 0, why=f"rejected: {reason}")])
        return {"rejected": reason}

    def _answer(self, ticket: str | None, answer: Answer) -> None:
        if ticket is not None:
            self._answers[ticket] = answer

