"""A short outage loses nothing a lead accepted (issue 22).

The shared database goes away for OUTAGE seconds (default the issue's 60) while events arrive: a
PostgreSQL server of this test's own, holding the ledger and the event archive the evaluation
writes, is stopped (`pg_ctl stop -m fast`: connections cut, socket gone) and started again on
its data. Meanwhile the lead says it waits, and why, in its state (the lead page shows it), counts
its tries in leadflow_evaluation_retries and rejects nothing; once the database is back, every
event is applied once, in order, and archived once.

The outage is real (every try meets the stopped server), its length is the Temporal server's
time: on the time-skipping test server the lead's waits between tries (1, 2, 4 ... up to
`evaluation_retry_cap` seconds, workflow timers) pass without the wall clock, so the test takes
seconds, not a minute. LEADFLOW_TEST_OUTAGE_SECONDS changes the length.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.policies import PolicyStore
from leadflow.archive.events import EventArchive
from leadflow.db.database import Database
from leadflow.settings import Settings
from leadflow.temporal import binary
from tests.support import pg
from tests.support.temporal_harness import ROOT, Harness, dev_server, evaluators, free_port, harness, replayer
from worker import build_worker, delivery_for
from workflows.types import LeadOptions

OUTAGE = float(os.environ.get("LEADFLOW_TEST_OUTAGE_SECONDS", "60"))


class Postgres:
    """A PostgreSQL server of the test's own that can be stopped and started again on its data:
    pgserver's where tests/support/pg.py would use it, else the system's binaries as
    tests/support/pg.py runs them."""

    def __init__(self) -> None:
        self.system: Any = None
        if pg.choice() == "pgserver":
            if "XDG_RUNTIME_DIR" not in os.environ:  # as tests/support/pg.py: before pgserver is imported
                os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="leadflow-pg-run-")
            import pgserver

            self.server = pgserver.get_server(tempfile.mkdtemp(prefix="leadflow-outage-pg-"),
                                              cleanup_mode="delete")
        else:
            try:
                self.server = self.system = pg._SystemServer.start()
            except pg._NoPostgres as err:
                pg._unavailable(str(err))
        self.url = self.server.get_uri()

    def stop(self) -> None:
        """Connections cut, the socket gone: every use of the database fails at once."""
        if self.system is not None:
            self.system._run("pg_ctl", "-D", str(self.system.data), "-m", "fast", "-w", "stop")
            return
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        if self.system is not None:
            log = str(self.system.folder / "server.log")
            self.system._run("pg_ctl", "-D", str(self.system.data), "-l", log, "-w", "-t", "60", "start")
            return
        self.server.ensure_postgres_running()  # on the same data, at the same socket

    def close(self) -> None:
        self.server.cleanup()


@pytest.fixture
def postgres():
    db = Postgres()
    try:
        yield db
    finally:
        db.close()


@contextlib.asynccontextmanager
async def measured_harness(tmp_path: Path, pool: Any = None, real_server: bool = False,
                           **settings_: Any) -> AsyncIterator[tuple[Harness, str]]:
    """tests.support.temporal_harness.harness with the worker's metrics served, as LEADFLOW_METRICS_ADDR
    would: the harness, and the URL of its Prometheus page. `real_server`: a Temporal dev server
    (wall-clock time) rather than the time-skipping test server."""
    bind = f"127.0.0.1:{free_port()}"
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=bind, counters_total_suffix=True, durations_as_seconds=True)))
    settings = Settings(home=tmp_path, policy_dir=ROOT / "policies", content_dir_setting=ROOT / "content",
                        task_queue=f"test-{tmp_path.name}", **settings_)
    ledger = Database.of(settings)
    store = PolicyStore(settings.policy_dir, content_dir=settings.content_dir)
    store.reload()
    if real_server:
        env, _ = await dev_server()
        client = await Client.connect(env.client.service_client.config.target_host,
                                      data_converter=pydantic_data_converter, runtime=runtime)
    else:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=binary("temporal-test-server"), data_converter=pydantic_data_converter,
            runtime=runtime)
        client = env.client
    delivery = delivery_for(settings, store, ledger)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as threads:
            async with build_worker(client, settings, store, threads, pool or evaluators(), delivery):
                yield Harness(env, client, settings, store, delivery), f"http://{bind}/metrics"
    finally:
        await env.shutdown()
        delivery.close()


async def until(check: Callable[[], Any], seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


def retries(metrics_url: str, reason: str) -> float:
    text = httpx.get(metrics_url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("leadflow_evaluation_retries_total{") and f'reason="{reason}"' in line)


def test_a_database_outage_delays_the_events_it_met_and_loses_none(tmp_path, postgres):
    options = LeadOptions(index=False)  # evaluation_retry_cap: 60 s between tries at most

    async def scenario():
        async with measured_harness(tmp_path, database_url=postgres.url) as (h, metrics_url):
            lead = await h.signup("outage@acme.example", options, role="manager", company_size=60)
            await h.delivered(lead.id, "email")  # its welcome e-mail settled before the database goes
            began = time.monotonic()
            postgres.stop()
            # events arrive while the database is down: signals (what the doors send) and one update
            # (an API call with wait=true), and one id twice
            sent = [f"o{i}" for i in range(5)]
            for event_id in sent:
                await lead.signal("event", {"id": event_id, "type": "page_view", "data": {"path": "/blog/x"}})
            await lead.signal("event", {"id": "o2", "type": "page_view", "data": {"path": "/again"}})
            waiter = asyncio.create_task(
                lead.execute_update("submit", {"id": "o-wait", "type": "email_click"}))
            st = await until(lambda: _waiting(h, lead))
            assert st["waiting"].startswith("evaluation retrying since "), st["waiting"]
            assert "the event archive" in st["waiting"], st["waiting"]
            assert st["events"] == 1 and st["rejected"] == 0
            await h.env.sleep(timedelta(seconds=OUTAGE / 2))
            for i in range(5, 10):
                sent.append(f"o{i}")
                await lead.signal("event", {"id": f"o{i}", "type": "email_open"})
            await h.env.sleep(timedelta(seconds=OUTAGE / 2))
            st = await h.state(lead)
            assert st["waiting"] and st["events"] == 1 and st["rejected"] == 0, st
            assert not waiter.done()
            tries = retries(metrics_url, "ArchiveError")
            assert tries >= 5, tries  # 1, 2, 4, 8, 16 s apart, then 32 (the outage's minute)
            postgres.start()
            # the next try comes within the cap
            await h.env.sleep(timedelta(seconds=options.evaluation_retry_cap))
            answer = await asyncio.wait_for(waiter, 30)
            assert answer.get("rejected") is None and answer["event_type"] == "email_click", answer
            st = await until(lambda: _applied(h, lead, 1 + len(sent) + 1))
            wall = time.monotonic() - began
            assert st["events"] == 1 + len(sent) + 1 and st["rejected"] == 0, st
            assert st["waiting"] is None
            # each event applied once: one score point per applied event, no story line of a rejection
            assert len(st["score_history"]) == st["events"]
            assert not any(s["why"].startswith("rejected") for s in st["story"])
            # a re-send after the outage is a duplicate, as of any applied event
            dup = await lead.execute_update("submit", {"id": "o3", "type": "page_view"})
            assert dup == {"duplicate": True, "event_id": "o3"}
            assert retries(metrics_url, "ArchiveError") == tries  # no failure since it came back
            await h.replay("evaluation-waits", lead)  # LEADFLOW_RECORD_HISTORIES=1 keeps it for CI
            print(f"\n{OUTAGE:g} s outage of the database (Temporal time); {tries:g} failed tries; "
                  f"{wall:.1f} s of wall time from the stop to every event applied")
            return lead.id, sent

    lead_id, sent = asyncio.run(scenario())
    ledger = Database.open(postgres.url)
    try:
        archived = [e["id"] for e in EventArchive(ledger).export(lead=lead_id)]
    finally:
        ledger.close()
    # every event once, in the order the lead took it (the update's, sent after o0..o4, before o5)
    assert archived == ["signup-outage@acme.example", *sent[:5], "o-wait", *sent[5:]], archived


async def _state(lead: Any) -> dict[str, Any] | None:
    try:
        return await lead.query("state", rpc_timeout=timedelta(seconds=5))  # type: ignore[no-any-return]
    except RPCError:  # a query that meets the lead between two runs may time out
        return None


async def _waiting(h: Harness, lead: Any) -> dict[str, Any] | None:
    st = await _state(lead)
    return st if st and st["waiting"] else None


async def _applied(h: Harness, lead: Any, n: int) -> dict[str, Any] | None:
    st = await _state(lead)
    return st if st and st["events"] >= n else None


async def _runs(h: Harness, lead: Any, n: int) -> dict[str, Any] | None:
    st = await _state(lead)
    return st if st and st["runs"] >= n else None


class Stalling:
    """An evaluator pool that hangs (as an overloaded machine's would) while `stall` is set."""

    def __init__(self) -> None:
        self.pool = evaluators()
        self.stall = True
        self.calls = 0

    async def evaluate(self, catalog: Any, batch: Any) -> Any:
        self.calls += 1
        while self.stall:
            await asyncio.sleep(0.05)
        return await self.pool.evaluate(catalog, batch)


def test_an_evaluation_that_overruns_waits_and_is_tried_again(tmp_path, monkeypatch):
    """The evaluation activity's timeout is infrastructure too: the lead waits and tries again,
    nothing is rejected (before, five overruns rejected the batch as a policy error)."""
    from leadflow.pages.routes import _chart, _timeline, templates
    from workflows import lead as lead_module

    monkeypatch.setattr(lead_module, "EVALUATE_TIMEOUT", 1.0)
    stalling = Stalling()

    async def scenario():
        async with harness(tmp_path, pool=stalling) as h:  # type: ignore[arg-type]
            stalling.stall = False
            lead = await h.signup("slow@acme.example", LeadOptions(index=False), role="manager")
            stalling.stall = True
            await lead.signal("event", {"id": "s1", "type": "page_view"})
            st = await until(lambda: _waiting(h, lead))
            assert "did not finish within 1 s" in st["waiting"], st["waiting"]
            # the lead's page says so
            page = templates.get_template("lead.html").render(
                lead=st, story=_timeline(st["story"]), chart=_chart(st["score_history"]), role="sales",
                csrf="-", merges=False, error=None)
            assert f"waiting</span> {st['waiting']}; the events it took wait in the lead" in page
            await h.env.sleep(timedelta(seconds=10))
            assert (await h.state(lead))["rejected"] == 0
            stalling.stall = False
            await h.env.sleep(timedelta(seconds=60))
            st = await until(lambda: _applied(h, lead, 2))
            assert st["events"] == 2 and st["rejected"] == 0 and st["waiting"] is None, st
            assert stalling.calls >= 3
    asyncio.run(scenario())


def test_a_long_wait_goes_on_in_the_next_run_with_its_events(tmp_path, monkeypatch):
    """After `evaluation_tries_per_run` failed tries the waiting events travel to the next run
    (the history of one run stays bounded however long the outage); nothing is lost or doubled.
    On a real dev server, with tries a second apart at most (the time-skipping test server does
    not skip time after a continue-as-new that met a local activity's timeout)."""
    from workflows import lead as lead_module

    monkeypatch.setattr(lead_module, "EVALUATE_TIMEOUT", 0.5)
    stalling = Stalling()
    options = LeadOptions(index=False, evaluation_tries_per_run=2, evaluation_retry_cap=1)

    async def scenario():
        async with measured_harness(tmp_path, pool=stalling, real_server=True) as (h, metrics_url):
            stalling.stall = False
            lead = await h.signup("long@acme.example", options, role="manager")
            stalling.stall = True
            for i in range(3):
                await lead.signal("event", {"id": f"l{i}", "type": "page_view"})
            first = await until(lambda: _waiting(h, lead))
            st = await until(lambda: _runs(h, lead, 3), seconds=60)
            # the same wait, since the same moment, in the third run
            assert st["waiting"].split(": ")[0] == first["waiting"].split(": ")[0], (st, first)
            assert st["events"] == 1 and st["rejected"] == 0
            assert retries(metrics_url, "timeout") >= 4
            await lead.signal("event", {"id": "l1", "type": "page_view"})  # a repeat meanwhile
            await lead.signal("event", {"id": "l3", "type": "email_open"})
            stalling.stall = False
            st = await until(lambda: _applied(h, lead, 5))
            assert st["events"] == 5 and st["rejected"] == 0 and st["waiting"] is None, st
            assert len(st["score_history"]) == 5
            async for run in h.client.list_workflows(f"WorkflowId = '{lead.id}'"):  # each run replays
                await replayer().replay_workflow(
                    await h.client.get_workflow_handle(lead.id, run_id=run.run_id).fetch_history())
    asyncio.run(scenario())


def test_an_event_rejected_for_a_policy_error_is_evaluated_again_when_sent_again(tmp_path):
    """Only an applied event is seen: a re-send of one the policy could not decide is no
    duplicate (the policy may be fixed meanwhile)."""
    from tests.support.policy import CHAIN

    async def scenario():
        policies = tmp_path / "policies"
        policies.mkdir()
        text = CHAIN.replace("policy: mini", "policy: lead-lifecycle") + "limits: {max_chain: 3}\n"
        (policies / "chain.yaml").write_text(text)
        async with harness(tmp_path, policy_dir=policies) as h:
            lead = await h.signup("again@acme.example")
            first = await lead.execute_update("submit", {"id": "p1", "type": "page_view"})
            assert first["rejected"].startswith("policy error:")
            # the policy is fixed: a chain of 3 is allowed again
            (policies / "chain.v2.yaml").write_text(
                text.replace("version: 1\n", "version: 2\nrollout: {running_leads: move}\n", 1)
                .replace("limits: {max_chain: 3}\n", ""))
            h.store.reload()
            again = await lead.execute_update("submit", {"id": "p1", "type": "page_view"})
            assert "duplicate" not in again and again.get("rejected") is None, again
            assert again["version"] == 2
            st = await h.state(lead)
            assert st["events"] == 2 and st["rejected"] == 1
            dup = await lead.execute_update("submit", {"id": "p1", "type": "page_view"})
            assert dup == {"duplicate": True, "event_id": "p1"}
            await h.replay("seen-when-applied", lead)
    asyncio.run(scenario())


def test_what_is_not_the_policys_fault_is_retried_not_rejected(tmp_path, default_policy):
    """Below the workflow: a worker without a policy, and an evaluator process that cannot load
    one in time, raise retryable errors (the lead waits) instead of rejecting every event."""
    from temporalio.exceptions import ApplicationError

    from activities.evaluation import Catalog, EvaluateBatch
    from activities.evaluator_pool import EvaluatorPool
    from activities.lead import LeadActivities
    from rules.engine import EngineError
    from tests.support.policy import T0, event

    batch = EvaluateBatch(lead=None, events=[event("signup"), event("page_view")], now=T0)
    empty = tmp_path / "policies"
    empty.mkdir()
    with pytest.raises(ApplicationError) as err:
        asyncio.run(LeadActivities(PolicyStore(empty, content_dir=ROOT / "content"))._decide(batch))
    assert err.value.type == "NoPolicy" and not err.value.non_retryable
    assert "this worker has no policy to evaluate with" in err.value.message

    pool = EvaluatorPool(1, load_deadline=0.001)  # a child cannot even start in a millisecond
    try:
        with pytest.raises(EngineError, match="did not finish loading the policy"):
            asyncio.run(pool.evaluate(Catalog(default_policy), batch))
        assert pool.restarts == 1
    finally:
        pool.close()
