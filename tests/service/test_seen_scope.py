"""The door's memory of ids passed on (`duplicate`) is about one Temporal server's leads: kept per
address, namespace and shared database, and for the embedded dev server per database it has; an
id whose lead the server does not know is sent, not called a duplicate."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from leadflow.seen import SeenEvents, scope_of
from leadflow.settings import Settings
from rules.identity import lead_key
from rules.models import LeadRef
from tests.support.stack import Stack, until
from tests.support.temporal_harness import dev_server


def test_what_one_scope_passed_on_is_not_known_in_another(tmp_path: Path):
    path = tmp_path / "intake.sqlite"
    here, there = SeenEvents(path, "here"), SeenEvents(path, "there")
    try:
        here.add([("lead-a", "e1"), ("lead-b", "e2")])
        assert here.known([("lead-a", "e1"), ("lead-b", "e2"), ("lead-a", "e2")]) == {
            ("lead-a", "e1"), ("lead-b", "e2")}
        assert there.known([("lead-a", "e1"), ("lead-b", "e2")]) == set()
        here.forget([("lead-a", "e1")])
        assert here.known([("lead-a", "e1"), ("lead-b", "e2")]) == {("lead-b", "e2")}
    finally:
        here.close()
        there.close()
    again = SeenEvents(path, "here")  # kept on disk, per scope
    try:
        assert again.known([("lead-b", "e2")]) == {("lead-b", "e2")}
    finally:
        again.close()


def test_the_memory_of_before_scopes_is_not_trusted(tmp_path: Path):
    path = tmp_path / "intake.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE seen (id TEXT NOT NULL, lead TEXT NOT NULL, at REAL NOT NULL, "
                "PRIMARY KEY (id, lead)) WITHOUT ROWID")
    old.execute("INSERT INTO seen VALUES ('e1', 'lead-a', 0)")
    old.commit()
    old.close()
    seen = SeenEvents(path)
    try:
        assert seen.known([("lead-a", "e1")]) == set()
    finally:
        seen.close()


def test_the_scope_follows_the_address_the_namespace_and_the_shared_database(tmp_path: Path):
    base = Settings(home=tmp_path, connect={"target_host": "temporal.internal:7233", "namespace": "sales"})
    same = Settings(home=tmp_path, connect={"target_host": "temporal.internal:7233", "namespace": "sales"})
    others = [
        Settings(home=tmp_path, connect={"target_host": "temporal.other:7233", "namespace": "sales"}),
        Settings(home=tmp_path, connect={"target_host": "temporal.internal:7233", "namespace": "ops"}),
        Settings(home=tmp_path, connect={"target_host": "temporal.internal:7233", "namespace": "sales"},
                 database_url="postgresql://leadflow:secret@db.internal/leadflow"),
        Settings(home=tmp_path),  # the embedded dev server
        Settings(home=tmp_path, dev_port=7299),
    ]
    assert scope_of(base) == scope_of(same)
    scopes = {scope_of(s) for s in [base, *others]}
    assert len(scopes) == len(others) + 1
    assert all("secret" not in scope for scope in scopes)  # a hash: a URL may carry a password


def test_a_new_dev_server_database_is_a_new_scope_and_a_restart_is_not(tmp_path: Path):
    settings = Settings(home=tmp_path)  # embedded: its state in home/temporal.db
    database = tmp_path / "temporal.db"

    async def started_once() -> str:
        env, _ = await dev_server(bare=True, database=database)
        try:
            return scope_of(settings)
        finally:
            await env.shutdown()

    first = asyncio.run(started_once())
    assert asyncio.run(started_once()) == first  # the same database: the same leads
    for leftover in tmp_path.glob("temporal.db*"):
        leftover.unlink()
    assert asyncio.run(started_once()) != first  # a new database knows none of the old leads


def test_a_sign_up_the_memory_says_was_passed_on_but_no_lead_took_is_sent(tmp_path: Path):
    """As after a new dev server: the door's memory has the sign-up's id, but no lead took it.
    Through the API, as a form would send it; the lead is there after, and then it is a duplicate."""
    email = "kim@acme.example"
    signup = {"id": "s-1", "type": "signup", "lead": {"email": email, "role": "vp"}}
    key = lead_key(LeadRef(email=email))
    with Stack(tmp_path, queue="seen", database=True, worker=True) as stack:
        seen = SeenEvents.of(stack.settings)  # the API's memory, in the API's scope
        seen.add([(key, "s-1")])  # passed on to a server that is gone
        seen.close()
        intake = stack.http("intake")
        (result,) = intake.post("/v1/events", json=[signup]).json()["results"]
        assert (result["status"], result["lead_id"]) == ("accepted", key)
        lead = until(lambda: (r := stack.http("ops").get(f"/v1/leads/{key}")).status_code == 200 and r.json())
        assert lead and lead["lead_id"] == key, lead
        (again,) = intake.post("/v1/events", json=[signup]).json()["results"]
        assert (again["status"], again["lead_id"]) == ("duplicate", key)
