"""The sales roster from outside: the API on uvicorn beside a Temporal dev server (no worker: the
roster and the assignments live in the shared database, and the task listing reads Temporal's
visibility), the person a `role/rep:key` names, and `leadflow roster` on the same database."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from leadflow.cli.main import main
from leadflow.db.database import Database
from leadflow.db.schema import roster_reps
from leadflow.keys import Keys, KeysInvalid
from leadflow.routing.desk import Desk
from tests.support.stack import Stack, until
from tests.support.temporal_harness import ROOT
from workflows import search

ANA_KEY = "sales-ana-key-0123456789abcdef"
ROSTER = """\
reps:
  - id: ana
    name: Ana Ortiz
    queues: [account-executives]
    capacity: 3
  - id: ben
    name: Ben Okafor
    queues: [account-executives, enterprise-accounts]
    capacity: 2
"""
AS_SHIPPED = {"reps": [
    {"id": "ana", "name": "Ana Ortiz", "queues": ["account-executives"], "capacity": 3},
    {"id": "ben", "name": "Ben Okafor", "queues": ["account-executives", "enterprise-accounts"],
     "capacity": 2}]}
AE, EA = ["account-executives"], ["enterprise-accounts"]
TASKS = [f"handoff-lead-rosterapi0000000000{n}-1" for n in range(4)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, shared_server):
    home = tmp_path_factory.mktemp("roster")
    (home / "roster.yaml").write_text(ROSTER)
    s = Stack(home, queue="roster", worker=False, server=shared_server, roster_setting=home / "roster.yaml")
    s.settings = s.settings.model_copy(update={"api_keys": f"{s.settings.api_keys},sales/ana:{ANA_KEY}"})
    with s:
        yield s


@pytest.fixture
def as_shipped(stack):
    """Each test starts from the same two reps, whatever the one before changed."""
    assert stack.http("admin").put("/v1/roster", json=AS_SHIPPED).status_code == 200
    return stack


def ana(stack: Stack):
    client = stack.http()
    client.headers["Authorization"] = f"Bearer {ANA_KEY}"
    return client


def test_a_key_may_name_the_person_who_holds_it():
    keys = Keys.parse("sales/ana:ana-key-0123456789abcdef, ops:ops-key-0123456789abcdef", "LEADFLOW_API_KEYS")
    assert keys.holder_of("ana-key-0123456789abcdef") == ("sales", "ana")
    assert keys.holder_of("ops-key-0123456789abcdef") == ("ops", None)
    assert keys.role_of("ana-key-0123456789abcdef") == "sales" and keys.holder_of("nope") is None
    for item in ("sales/:ana-key-0123456789abcdef", "sales/Ana:ana-key-0123456789abcdef"):
        with pytest.raises(KeysInvalid, match="a roster rep id") as refused:
            Keys.parse(item, "LEADFLOW_API_KEYS")
        assert "ana-key" not in str(refused.value)  # a key is never said back


def test_sales_change_the_roster_ops_read_it_and_nobody_without_a_key(as_shipped):
    stack = as_shipped
    changes = [("PUT", "/v1/roster", {"json": AS_SHIPPED}),
               ("PUT", "/v1/roster/reps/carla", {"json": {"queues": ["enterprise-accounts"]}}),
               ("PATCH", "/v1/roster/reps/ana", {"json": {"capacity": 4}}),
               ("DELETE", "/v1/roster/reps/ben", {})]
    assert stack.http().get("/v1/roster").status_code == 401
    assert stack.http("intake").get("/v1/roster").status_code == 403
    for method, path, extra in changes:
        assert stack.http().request(method, path, **extra).status_code == 401, path
        assert stack.http("ops").request(method, path, **extra).status_code == 403, path
    assert stack.http("ops").get("/v1/roster").status_code == 200

    roster = stack.http("sales").get("/v1/roster").json()
    assert [(r["id"], r["capacity"], r["open_tasks"], r["away"]) for r in roster["reps"]] == [
        ("ana", 3, 0, None), ("ben", 2, 0, None)]
    assert roster["queues"] == {"account-executives": {"reps": ["ana", "ben"], "waiting": 0},
                                "enterprise-accounts": {"reps": ["ben"], "waiting": 0}}
    assert roster["file"] == str(stack.settings.roster_file) and roster["file_problem"] is None

    sales = stack.http("sales")
    away = sales.patch("/v1/roster/reps/ana",
                       json={"away": {"from": "2026-12-24", "until": "2027-01-02T09:00Z"}})
    assert away.status_code == 200, away.text
    assert away.json()["away"] == {"from": "2026-12-24T00:00:00Z", "until": "2027-01-02T09:00:00Z"}
    assert sales.get("/v1/roster").json()["reps"][0]["away"]["until"] == "2027-01-02T09:00:00Z"
    assert sales.patch("/v1/roster/reps/ana", json={"away": None}).json()["away"] is None

    bad = sales.patch("/v1/roster/reps/ana", json={"capacity": -1, "colour": "red"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "colour"]
    bad = sales.patch("/v1/roster/reps/ana", json={"capacity": -1})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "capacity"]
    backwards = sales.patch("/v1/roster/reps/ana",
                            json={"away": {"from": "2027-01-02", "until": "2026-12-24"}})
    assert backwards.status_code == 422 and "`until` must come after `from`" in backwards.text
    assert sales.patch("/v1/roster/reps/nobody", json={"capacity": 1}).status_code == 404

    added = sales.put("/v1/roster/reps/carla", json={"name": "Carla Stein", "queues": EA})
    assert added.status_code == 200 and added.json()["capacity"] == 1  # the roster file's default
    other = sales.put("/v1/roster/reps/carla", json={"id": "dora", "queues": EA})
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["body", "id"]
    badly_named = sales.put("/v1/roster/reps/Carla", json={"queues": EA})
    assert badly_named.status_code == 422 and badly_named.json()["detail"][0]["loc"] == ["path", "rep_id"]
    assert sales.get("/v1/roster").json()["queues"]["enterprise-accounts"]["reps"] == ["ben", "carla"]
    assert sales.delete("/v1/roster/reps/carla").status_code == 204
    assert sales.delete("/v1/roster/reps/carla").status_code == 404


def test_a_whole_roster_as_yaml_or_json_and_a_bad_line_is_named(as_shipped):
    stack = as_shipped
    bad_yaml = ROSTER.replace("capacity: 2", "capacity: lots")
    line = bad_yaml.splitlines().index("    capacity: lots") + 1
    refused = ana(stack).put("/v1/roster", content=bad_yaml, headers={"content-type": "application/yaml"})
    assert refused.status_code == 422, refused.text
    problem = refused.json()["detail"][0]
    assert problem["line"] == line and problem["msg"].startswith(f"body.yaml:{line}: rep 'ben': capacity:")
    bad_json = {"reps": [AS_SHIPPED["reps"][0], {**AS_SHIPPED["reps"][1], "capacity": "lots"}]}
    refused = stack.http("sales").put("/v1/roster", json=bad_json)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "reps", 1, "capacity"]
    assert refused.json()["detail"][0]["msg"].startswith("rep 'ben': ")
    assert [r["capacity"] for r in stack.http("sales").get("/v1/roster").json()["reps"]] == [3, 2]

    yaml = ROSTER.replace("capacity: 3", "capacity: 5") + "    away: {until: 2030-01-01}\n"
    taken = ana(stack).put("/v1/roster", content=yaml, headers={"content-type": "application/yaml"})
    assert taken.status_code == 200, taken.text
    assert [(r["id"], r["capacity"]) for r in taken.json()["reps"]] == [("ana", 5), ("ben", 2)]
    assert taken.json()["reps"][1]["away"] == {"from": None, "until": "2030-01-01T00:00:00Z"}
    assert _changed_by(stack) == {"ana": "ana", "ben": "ana"}  # the key's person
    stack.http("sales").put("/v1/roster?as=sam", json=AS_SHIPPED)
    assert _changed_by(stack) == {"ana": "sam", "ben": "sam"}


def test_a_key_that_names_its_person_lists_my_tasks_and_a_change_counts_for_the_next_task(as_shipped):
    stack = as_shipped
    refused = stack.http("sales").get("/v1/tasks?rep=me")
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "rep"]

    # hand-off tasks as visibility lists them; no worker runs them, the desk assigns them
    stack.run(_task(stack.client, TASKS[1], "account-executives"))
    stack.run(_task(stack.client, TASKS[2], "nobody-works-here"))
    ledger = Database.of(stack.settings)
    try:
        desk = Desk(ledger, stack.settings.roster_file)
        now = datetime.now(timezone.utc)
        assert desk.assign(TASKS[1], "account-executives", "lead-a", now, exclude=("ben",))["rep"] == "ana"
        assert desk.assign(TASKS[2], "nobody-works-here", "lead-b", now)["waiting"]
        # ana goes away through the API: the next task of her queue goes to ben, nothing restarted
        stack.http("sales").patch("/v1/roster/reps/ana", json={"away": {"until": "2030-01-01"}})
        assert desk.assign(TASKS[3], "account-executives", "lead-c", now)["rep"] == "ben"
    finally:
        ledger.close()

    mine = until(lambda: ana(stack).get("/v1/tasks?rep=me").json()["tasks"])
    assert [(t["id"], t["rep"], t["assignment"]) for t in mine] == [(TASKS[1], "ana", "open")]
    assert stack.http("sales").get("/v1/tasks?rep=ana").json()["tasks"] == mine
    waiting = until(lambda: stack.http("ops").get("/v1/tasks?assigned=false").json()["tasks"])
    assert [(t["id"], t["rep"], t["assignment"]) for t in waiting] == [(TASKS[2], None, "waiting")]
    roster = stack.http("ops").get("/v1/roster").json()
    assert roster["queues"]["nobody-works-here"] == {"reps": [], "waiting": 1}
    assert {r["id"]: r["open_tasks"] for r in roster["reps"]} == {"ana": 1, "ben": 1}


def test_roster_apply_refuses_a_bad_file_at_its_line_and_takes_a_good_one(as_shipped, tmp_path, capsys,
                                                                         monkeypatch):
    stack = as_shipped
    monkeypatch.setenv("LEADFLOW_HOME", str(stack.settings.home))
    monkeypatch.setenv("LEADFLOW_POLICY_DIR", str(ROOT / "policies"))
    monkeypatch.setenv("LEADFLOW_ROSTER", str(stack.settings.roster_file))
    bad = tmp_path / "roster.yaml"
    bad.write_text(ROSTER.replace("capacity: 2", "capacity: -2"))
    assert main(["roster", "apply", str(bad)]) == 1
    line = bad.read_text().splitlines().index("    capacity: -2") + 1
    assert f"{bad}:{line}: rep 'ben': capacity: Input should be greater than or equal to 0" \
        in capsys.readouterr().err

    good = tmp_path / "good.yaml"
    good.write_text(ROSTER.replace("capacity: 2", "capacity: 7"))
    assert main(["roster", "apply", str(good), "--as", "sam"]) == 0
    assert [r["capacity"] for r in stack.http("sales").get("/v1/roster").json()["reps"]] == [3, 7]
    assert main(["roster", "set", "ben", "--capacity", "1", "--away-from", "2030-01-01", "--as", "sam"]) == 0
    assert main(["roster", "set", "ben", "--back", "--away-until", "2030-02-01"]) == 1
    capsys.readouterr()
    assert main(["roster", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["capacity"], r["away"]) for r in shown["reps"]] == [
        ("ana", 3, None), ("ben", 1, {"from": "2030-01-01T00:00:00Z", "until": None})]


async def _task(client: Client, task_id: str, queue: str) -> None:
    """A hand-off task's workflow as visibility lists it: its search attributes set at start, on
    a task queue no worker polls (it never runs; only the listing and the desk are under test)."""
    attributes = TypedSearchAttributes([SearchAttributePair(search.TASK_QUEUE, queue),
                                        SearchAttributePair(search.TASK_STATUS, "open")])
    await client.start_workflow("HandoffWorkflow", {"task_id": task_id}, id=task_id,
                                task_queue="nobody-polls", search_attributes=attributes)


def _changed_by(stack: Stack) -> dict[str, str]:
    ledger = Database.of(stack.settings)
    try:
        with ledger.engine.connect() as db:
            return dict(db.execute(select(roster_reps.c.id, roster_reps.c.updated_by)).all())
    finally:
        ledger.close()

