"""Activation that both teams own: a version is proposed (refused unless it validates and its
own tests pass), approved by one marketing and one sales owner its file lists, then activated;
all kept with who, when and the content hash in the shared database, and workers evaluate the
version the database names. A version in shadow is evaluated on every live event and never
acted on; its report compares it with what the live version did."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path

import pytest

from activities.policies import PolicyStore
from leadflow.cli.main import main
from leadflow.db.database import Database
from leadflow.governance.registry import FIRST_START, Registry
from tests.support.temporal_harness import ROOT, api, free_port, harness

V1 = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()
# v2 hands over leads of a lower fit; its own tests still pass
V2 = V1.replace("version: 1\n", "version: 2\n", 1).replace("score.fit: {gte: 50}", "score.fit: {gte: 40}")
# a version whose own examples no longer hold: intent counts double
V2_FAILING = V1.replace("version: 1\n", "version: 2\n", 1).replace(
    "{prefix: /pricing}}, points: 15,", "{prefix: /pricing}}, points: 30,")
OPS_KEY = "ops-key-0123456789abcdef"
# the owners' own keys, each naming its person (role:person:key): an approval is a person's
OWNER_KEYS = {"marketing-ops@example.com": "marketing-owner-key-0123456789",
              "sales-ops@example.com": "sales-owner-key-0123456789ab"}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def taken(h, lead, events: int) -> dict:
    """The lead's state once it has taken `events` events (a signal is applied a moment later)."""
    for _ in range(100):
        st = await h.state(lead)
        if st["events"] >= events:
            return st
        await asyncio.sleep(0.05)
    return st


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEADFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEADFLOW_POLICY_DIR", str(ROOT / "policies"))
    monkeypatch.setenv("LEADFLOW_CONTENT_DIR", str(ROOT / "content"))
    (tmp_path / "home").mkdir()
    return tmp_path


def test_a_version_needs_its_tests_one_marketing_and_one_sales_owner_before_it_decides(home, capsys):
    ledger = Database.open(f"sqlite:///{home / 'home' / 'leadflow.sqlite'}")
    store = PolicyStore(ROOT / "policies", content_dir=ROOT / "content", registry=Registry(ledger))
    store.reload()  # a fresh database takes the shipped file, recorded as the first start
    assert store.active().version == 1 and store.rollout() == "pin"
    code, out, _ = cli(capsys, "policy", "log", "--json")
    first = [json.loads(line) for line in out.splitlines()]
    assert [(e["action"], e["who"], e["version"]) for e in reversed(first)] == [
        ("proposed", FIRST_START, 1), ("activated", FIRST_START, 1)]
    assert first[0]["sha"] == store.active().sha and "first start" in first[0]["detail"]

    broken = home / "broken.yaml"
    broken.write_text(V2.replace("  fit_cap: 100\n", "  fit_cap: [100\n"))
    code, _, err = cli(capsys, "policy", "propose", str(broken))
    assert code == 1 and f"{broken}:" in err and "cannot be proposed" in err
    failing = home / "failing.yaml"
    failing.write_text(V2_FAILING)
    code, _, err = cli(capsys, "policy", "propose", str(failing))
    assert code == 1 and "intent decays" in err and "fails" in err

    v2 = home / "lead-lifecycle.v2.yaml"
    v2.write_text(V2)
    code, out, _ = cli(capsys, "policy", "propose", str(v2), "--as", "ops@example.com", "--json")
    proposal = json.loads(out)
    assert code == 0 and proposal["new"] and proposal["version"] == 2
    code, out, _ = cli(capsys, "policy", "propose", str(v2))
    assert code == 0 and "already proposed" in out
    other = home / "other.yaml"
    other.write_text(V2.replace("half_life: 21d", "half_life: 20d"))
    code, _, err = cli(capsys, "policy", "propose", str(other))
    assert code == 1 and "proposed before with other content" in err

    code, _, err = cli(capsys, "policy", "approve", "lead-lifecycle", "2", "--as", "intruder@example.com")
    assert code == 1 and "not an owner" in err
    code, _, err = cli(capsys, "policy", "approve", "lead-lifecycle", "9", "--as", "sales-ops@example.com")
    assert code == 1 and "has not been proposed" in err
    code, out, _ = cli(capsys, "policy", "approve", "lead-lifecycle", "2", "--as",
                       "Marketing-Ops@Example.com")
    assert code == 0 and "as marketing" in out
    code, _, err = cli(capsys, "policy", "activate", "lead-lifecycle", "2")
    assert code == 1 and "no sales owner has approved" in err
    store.reload()
    assert store.active().version == 1  # nothing changed for the workers

    # a file cannot name its own approvers: the owners of the version that runs now approve
    both = home / "lead-lifecycle.v3.yaml"
    both.write_text(V2.replace("version: 2\n", "version: 3\n", 1).replace(
        "sales: [sales-ops@example.com]", "sales: [sales-ops@example.com, both@example.com]").replace(
        "marketing: [marketing-ops@example.com]", "marketing: [marketing-ops@example.com, both@example.com]"))
    assert cli(capsys, "policy", "propose", str(both))[0] == 0
    code, _, err = cli(capsys, "policy", "approve", "lead-lifecycle", "3", "--as", "both@example.com")
    assert code == 1 and "not an owner" in err and "marketing-ops@example.com" in err

    code, out, _ = cli(capsys, "policy", "approve", "lead-lifecycle", "2", "--as", "sales-ops@example.com")
    assert code == 0 and "both teams approved" in out
    code, out, _ = cli(capsys, "policy", "activate", "lead-lifecycle", "2", "--rollout", "move", "--as",
                       "ops@example.com")
    assert code == 0 and "v2 active" in out
    store.reload()
    assert store.active().version == 2 and store.rollout() == "move"
    assert store.active().sha == proposal["sha256"]
    # another worker, another folder (an old checkout without v2): the database decides
    elsewhere = home / "old-checkout"
    elsewhere.mkdir()
    (elsewhere / "lead-lifecycle.v1.yaml").write_text(V1)
    other_worker = PolicyStore(elsewhere, content_dir=ROOT / "content", registry=Registry(ledger))
    other_worker.reload()
    assert other_worker.active().sha == store.active().sha

    code, out, _ = cli(capsys, "policy", "log", "--json")
    log = [json.loads(line) for line in out.splitlines()]
    assert [(e["action"], e["who"], e["version"], e["team"]) for e in log[:3]] == [
        ("activated", "ops@example.com", 2, ""), ("approved", "sales-ops@example.com", 2, "sales"),
        ("proposed", getpass.getuser(), 3, "")]
    # whoever holds the database says who they are; the log keeps who ran the command beside
    assert "operating-system user" in log[1]["detail"]
    assert all(e["sha"] == proposal["sha256"] for e in log if e["version"] == 2)
    assert all(isinstance(e["at"], float) for e in log)
    code, out, _ = cli(capsys, "policy", "log")
    assert "activated" in out and "ops@example.com" in out and proposal["sha256"][:12] in out
    ledger.close()


def test_shadow_decides_beside_the_live_version_and_is_never_acted_on_then_activation_moves_leads(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEADFLOW_HOME", str(tmp_path))  # the CLI reads the harness's database

    async def scenario() -> None:
        import httpx

        keys = [f"ops:{OPS_KEY}", *(f"ops:{who}:{key}" for who, key in OWNER_KEYS.items())]
        settings = {"api_keys": ",".join(keys), "http": f"127.0.0.1:{free_port()}"}
        async with harness(tmp_path, governed=True, **settings) as h, api(h) as base:
            registry = h.store.registry
            assert registry is not None and h.store.active().version == 1
            web = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {OPS_KEY}"})
            async with web:
                answer = await web.post("/v1/policies/proposals?as=ops@example.com", content=V2,
                                        headers={"Content-Type": "application/yaml"})
                assert answer.status_code == 201, answer.text
                refused = await web.post("/v1/policies/proposals", content=V2_FAILING.replace(
                    "version: 2\n", "version: 4\n", 1), headers={"Content-Type": "application/yaml"})
                assert refused.status_code == 422 and "intent decays" in refused.text
                answer = await web.put("/v1/policies/lead-lifecycle/shadow", json={"version": 2})
                assert answer.status_code == 200 and answer.json()["shadow"] == 2
                h.store.reload()  # what the worker's poll does
                assert h.store.shadow() is not None and h.store.active().version == 1

                # fit 45: v1 nurtures it, v2 (in shadow) would hand it to sales on the demo request
                lead = await h.signup("mid@fit.example", budget=20000, need="crm", company_size=80)
                await lead.signal("event", {"id": "demo-1", "type": "demo_request"})
                st = await taken(h, lead, 2)
                assert st["state"] == "nurturing" and st["version"] == 1
                assert h.delivery.ledger.list(lead=lead.id, kind="handoff") == []

                from leadflow.replay.shadow_report import report

                figures = await asyncio.to_thread(report, h.delivery.ledger, answer.json()["shadow_sha256"],
                                                  "live", "shadow")
                assert figures["leads"] == 1 and figures["changed"] == 1
                assert figures["moves"] == {"nurturing -> sales-ready": 1}
                assert figures["old"]["handoffs"] == 0 and figures["new"]["handoffs"] == 1
                parted = figures["partings"][0]
                assert parted["event_id"] == "demo-1" and "qualify" in parted["new_fired"]
                assert parted["email"] == "mid@fit.example"
                # the same through the CLI, and the HTML page to send to the other team
                capsys.readouterr()
                code, out, err = cli(capsys, "policy", "shadow-report", "--report", str(tmp_path / "s.html"))
                assert code == 0, err
                assert "1 run differently" in out and "nurturing -> sales-ready" in out and "demo-1" in out
                assert "data:image/png;base64," in (tmp_path / "s.html").read_text()
                # stopped and started again, a shadow run starts afresh: its report covers that run
                sha = answer.json()["shadow_sha256"]
                registry.shadow("lead-lifecycle", None, "ops@example.com")
                registry.shadow("lead-lifecycle", 2, "ops@example.com")
                again = await asyncio.to_thread(report, h.delivery.ledger, sha, "live", "shadow")
                assert again["leads"] == 0

                # approvals through the API, then activation: the running lead moves to v2
                for who, key in OWNER_KEYS.items():
                    answer = await web.post("/v1/policies/lead-lifecycle/2/approvals", json={"as": who},
                                            headers={"Authorization": f"Bearer {key}"})
                    assert answer.status_code == 200, answer.text
                nope = await web.post("/v1/policies/lead-lifecycle/2/approvals",
                                      json={"as": "marketing-ops@example.com"})  # a key naming nobody
                assert nope.status_code == 403
                answer = await web.post("/v1/policies/lead-lifecycle/2/activation", json={"rollout": "move"})
                assert answer.status_code == 200 and answer.json()["active"] == 2, answer.text
                listed = (await web.get("/v1/policies")).json()["policies"]
                assert [p["version"] for p in listed if p["active"]] == [2]
                log = (await web.get("/v1/policies/log")).json()["log"]
                assert [e["action"] for e in log[:4]] == ["activated", "approved", "approved", "shadowed"]
            code, out, err = cli(capsys, "policy", "shadow", "lead-lifecycle", "--stop", "--as",
                                 "ops@example.com")
            assert code == 0 and "no shadow run" in out, err
            h.store.reload()
            assert h.store.shadow() is None
            await lead.signal("event", {"id": "open-1", "type": "email_open"})
            st = await taken(h, lead, 3)
            assert st["version"] == 2
            assert any(s["why"] == "rollout of v2 moved the lead from v1" for s in st["story"])
            # the funnel's facts: every state change the live lead made, with its rule and version
            from sqlalchemy import select

            from leadflow.db.schema import transitions
            with h.delivery.ledger.engine.connect() as db:
                t = transitions.c
                moves = db.execute(select(t.from_state, t.to_state, t.rule, t.version)
                                   .where(t.lead == lead.id).order_by(t.at, t.seq)).all()
            assert [tuple(m) for m in moves][:2] == [("captured", "scored", "score-new", 1),
                                                     ("scored", "nurturing", "start-nurture", 1)]
            await h.replay("governed", lead)

    asyncio.run(scenario())


def _first_start(db: str, barrier, answers) -> None:
    ledger = Database.open(db)
    try:
        store = PolicyStore(ROOT / "policies", content_dir=ROOT / "content", registry=Registry(ledger))
        barrier.wait(timeout=60)  # every process asks the fresh database at the same moment
        store.reload()
        answers.put(store.active().sha)
    finally:
        ledger.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_starting_together_on_a_fresh_database_activate_the_shipped_file_once(tmp_path, backend):
    import multiprocessing

    from tests.support import pg

    db = f"sqlite:///{tmp_path / 'shared.sqlite'}" if backend == "sqlite" else pg.new_database()
    Database.open(db).close()  # the schema is there; no policy is
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager:
        barrier, answers = manager.Barrier(6), manager.Queue()
        starts = [spawn.Process(target=_first_start, args=(db, barrier, answers)) for _ in range(6)]
        for p in starts:
            p.start()
        for p in starts:
            p.join(120)
        assert [p.exitcode for p in starts] == [0] * 6
        shas = [answers.get(timeout=5) for _ in starts]
    assert len(set(shas)) == 1
    ledger = Database.open(db)
    registry = Registry(ledger)
    log = registry.log()
    assert [e["action"] for e in log].count("activated") == 1 and len(log) == 2
    # and the rest of the road on this database: propose, two approvals, activation
    from leadflow.governance.checks import checked

    v2 = checked(V2.encode(), "lead-lifecycle.v2.yaml", ROOT / "content")
    registry.propose(v2, "ops@example.com")
    registry.approve("lead-lifecycle", 2, "sales-ops@example.com", {"sales": ["sales-ops@example.com"]})
    registry.approve("lead-lifecycle", 2, "marketing-ops@example.com",
                     {"marketing": ["marketing-ops@example.com"]})
    state = registry.activate("lead-lifecycle", 2, "ops@example.com", "move")
    assert (state.version, state.sha, state.rollout) == (2, v2.sha, "move")
    assert [e["action"] for e in registry.log()][:3] == ["activated", "approved", "approved"]
    ledger.close()


def test_one_person_on_both_lists_of_the_running_version_cannot_approve_alone(tmp_path):
    from leadflow.governance.checks import checked
    from leadflow.governance.registry import Conflict
    from leadflow.operations import governance

    both = V1.replace("sales: [sales-ops@example.com]", "sales: [sales-ops@example.com, both@example.com]")
    both = both.replace("marketing: [marketing-ops@example.com]",
                        "marketing: [marketing-ops@example.com, both@example.com]")
    ledger = Database.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    registry = Registry(ledger)
    registry.first_start("lead-lifecycle", [checked(both.encode(), "v1.yaml", ROOT / "content")])
    v2 = checked(both.replace("version: 1\n", "version: 2\n", 1).encode(), "v2.yaml", ROOT / "content")
    registry.propose(v2, "ops@example.com")
    said = governance.approve(registry, "lead-lifecycle", 2, "both@example.com")
    assert said["as"] == ["marketing", "sales"] and not said["can_activate"]
    with pytest.raises(Conflict, match="two different people"):
        registry.activate("lead-lifecycle", 2, "ops@example.com", "move")
    assert governance.approve(registry, "lead-lifecycle", 2, "sales-ops@example.com")["can_activate"]
    ledger.close()
