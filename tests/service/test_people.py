"""A person exported and erased, on the whole stack (a Temporal dev server keeping its state in a
file under the stack's home, a worker, the API and pages, make up's mail sink in home/mail): a
visitor who browsed anonymously signs up with a personal address, gets mail, unsubscribes, signs
up again with a work address and asks for a demo (a hand-off), and the two are merged. The
export holds every event sent for them; after the erasure no file under the home (Temporal's
database, leadflow's, the intake's seen table, the mail) nor any log line of the worker and API
holds their address, name or company, their lead's page is a 404, and a new sign-up with the
address starts a lead that knows nothing of the old one, its marketing mail still suppressed."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, inspect, text

from leadflow.db.database import Database, address_hash
from leadflow.delivery.sink import message, messages, start_sink
from leadflow.ops.logs import JsonLines, configure
from leadflow.people.erasures import KEY_USE, pseudonym
from leadflow.tracking.visitors import visitors_of
from rules.identity import lead_key
from rules.models import LeadRef
from tests.support import pg
from tests.support.stack import Stack, until
from tests.support.temporal_harness import ROOT

PERSONAL, WORK = "quorra.vantwistle@fernmail.example", "quorra@brindlecog.example"
FIRST, LAST, COMPANY = "Quorrafel", "Vantwistle", "Brindlecog Instruments"
HOT = {"role": "vp", "budget": 60000, "timeline": "now", "company_size": 300}
VISITOR = "v-Quorra0123456789abcd"
OTHER = "dev.okafor@brightline.example"  # someone else, who must keep everything


class Kept(logging.Handler):
    """Every log line of the process (the worker's and the API's: the stack runs in it) as the
    services write it: their JSON lines (leadflow.ops.logs), at the level they log at."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonLines())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture()
def logs() -> Iterator[Kept]:
    root = logging.getLogger()
    before = (root.handlers[:], root.level, logging.getLogger("mail.log").level)
    configure(as_json=True, level=logging.INFO)  # as `leadflow serve` and `worker` start
    kept = Kept()
    root.addHandler(kept)
    try:
        yield kept
    finally:
        root.handlers[:], _, _ = before
        root.setLevel(before[1])
        logging.getLogger("mail.log").setLevel(before[2])


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _lead(stack: Stack, who: str, check: Any = lambda lead: True) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        answer = stack.http("ops").get(f"/v1/leads/{who}")
        return answer.json() if answer.status_code == 200 and check(answer.json()) else None
    found = until(read, 60)
    assert found, f"{who}: never as the test waits for: {stack.http('ops').get(f'/v1/leads/{who}').text}"
    return found  # type: ignore[no-any-return]


def _mail_to(directory: Path, address: str) -> list[dict[str, Any]]:
    return [m for m in messages(directory) if address in m["to"]]


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEADFLOW_HOME": str(stack.settings.home),
           "LEADFLOW_DEV_PORT": str(stack.settings_port), "LEADFLOW_TASK_QUEUE": stack.settings.task_queue}
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "LEADFLOW_DATABASE_URL", "LEADFLOW_CODEC_KEYS"):
        env.pop(name, None)
    if stack.settings.database_url:
        env["LEADFLOW_DATABASE_URL"] = stack.settings.database_url
    return subprocess.run([sys.executable, "-m", "leadflow", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=180)


def _found(home: Path, needles: list[bytes]) -> dict[str, list[str]]:
    """Which files under home hold which needles (case-insensitive, as bytes)."""
    hits: dict[str, list[str]] = {}
    for path in sorted(home.rglob("*")):
        if path.is_file():
            try:
                data = path.read_bytes().lower()
            except FileNotFoundError:  # a server's file it removed as we looked
                continue
            found = [n.decode() for n in needles if n.lower() in data]
            if found:
                hits[str(path.relative_to(home))] = found
    return hits


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_person_exported_then_erased_leaves_nothing_but_their_suppression(tmp_path: Path, logs: Kept,
                                                                             backend: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shared: dict[str, Any] = {"database_url": pg.new_database()} if backend == "postgresql" else {}
    sink = start_sink(home / "mail")
    try:
        with Stack(home, queue="people", database=True, smtp_host="127.0.0.1", smtp_port=sink.port,
                   mail_from="Acme <hello@acme.example>", delivery_processes=0, **shared) as stack:
            # the commands are the same whatever the database: run on one of the two
            _scenario(stack, home, logs, commands=backend == "sqlite")
    finally:
        sink.stop()


def _rows_naming(url: str, needles: list[bytes]) -> list[tuple[str, str]]:
    """Rows of any table of leadflow's database, as the database answers them, that hold one of
    the needles: (table, needle)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    found = []
    try:
        with engine.connect() as db:
            for table in inspect(engine).get_table_names():
                rows = db.execute(text(f'SELECT * FROM "{table}"')).all()
                said = "\n".join(repr(tuple(row)) for row in rows).lower()
                found += [(table, n.decode()) for n in needles if n.decode().lower() in said]
    finally:
        engine.dispose()
    return found


def _relations(url: str, files: dict[str, list[str]]) -> dict[str, list[str]]:
    """The PostgreSQL server's files named by the relation each holds (for a failure's message)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as db:
            def name(path: str) -> str:
                node = path.rsplit("/", 1)[-1].split(".")[0].split("_")[0]
                found = db.execute(text("SELECT relname FROM pg_class WHERE relfilenode = :n"),
                                   {"n": int(node)}).scalar() if node.isdigit() else None
                return f"{path} ({found})"
            return {name(path): needles for path, needles in files.items()}
    finally:
        engine.dispose()


def _scenario(stack: Stack, home: Path, logs: Kept, commands: bool) -> None:
    admin, ops = stack.http("admin"), stack.http("ops")
    mail = home / "mail"
    ledger = Database.of(stack.settings)
    try:
        # two pages seen before anyone knew who it was, stitched to the lead by the sign-up
        now = time.time()
        for n, path in enumerate(("/pricing", "/customers/brindlecog")):
            assert visitors_of(ledger).view(VISITOR, now - 60 + n, {"path": path, "title": f"{COMPANY} {n}"},
                                             now) is True
    finally:
        ledger.close()
    sent = [
        {"id": "p-signup", "type": "signup", "data": {"visitor_id": VISITOR},
         "lead": {"email": PERSONAL, "first_name": FIRST, "last_name": LAST, "company": COMPANY,
                  "role": "manager", "consent": True}},
        {"id": "p-read", "type": "content_download", "lead": {"email": PERSONAL},
         "data": {"asset": f"guide for {FIRST} {LAST}"}},
        {"id": "w-signup", "type": "signup",
         "lead": {"email": WORK, "first_name": FIRST, "last_name": LAST, "company": COMPANY, "consent": True,
                  **HOT}},
        {"id": "w-demo", "type": "demo_request", "lead": {"email": WORK}, "data": {"note": f"call {WORK}"}},
    ]
    for event in sent:  # the sign-up through the batch door, which stitches its visitor's views
        answer = admin.post("/v1/events" if event["id"] == "p-signup" else "/v1/events?wait=true", json=event)
        assert answer.status_code in (200, 202), answer.text
        if event["id"] == "p-signup":
            _lead(stack, PERSONAL, lambda lead: lead["events"] >= 3)
    other = admin.post("/v1/events?wait=true", json={"id": "o-signup", "type": "signup", "lead": {
        "email": OTHER, "first_name": "Dev", "consent": True, **HOT}})
    assert other.status_code == 200, other.text
    personal_id, work_id = lead_key(LeadRef(email=PERSONAL)), lead_key(LeadRef(email=WORK))
    assert until(lambda: _mail_to(mail, PERSONAL) and _mail_to(mail, WORK) and _mail_to(mail, OTHER), 60), \
        messages(mail)
    # the person unsubscribes from the personal address's mail (one click, as a mail client does)
    welcome = message(mail, _mail_to(mail, PERSONAL)[0]["id"])
    assert welcome is not None
    link = next(u["href"] for u in welcome["unsubscribe"] if str(u["href"]).startswith("http"))
    unsub = stack.http().post(urlsplit(link).path, data={"List-Unsubscribe": "One-Click"})
    assert unsub.status_code == 200, unsub.text
    task = _lead(stack, WORK, lambda lead: lead["open_handoff"])["open_handoff"]
    assert admin.post(f"/v1/leads/{PERSONAL}/same-as", json={"email": WORK}).status_code == 200
    merged = _lead(stack, PERSONAL, lambda lead: lead["aliases"] and lead["open_handoff"])
    assert merged["lead_id"] == personal_id and merged["aliases"][0]["lead_id"] == work_id
    _lead(stack, PERSONAL, lambda lead: any(s["event_type"] == "unsubscribe" for s in lead["story"]))

    # the export: one document, the same from the API and the CLI, with every event sent for them
    assert stack.http("sales").get(f"/v1/people/{WORK}/export").status_code == 403
    answer = ops.get(f"/v1/people/{WORK}/export")
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["schema"] == "leadflow.person/1" and document["lead_id"] == personal_id
    assert set(document["lead_ids"]) >= {personal_id, work_id}
    assert set(document["emails"]) == {PERSONAL, WORK}
    ids = {e["id"] for e in document["events"]}
    assert {e["id"] for e in sent} <= ids, ids
    types = [e["type"] for e in document["events"]]
    assert types.count("page_view") == 2 and "identify" in types and "unsubscribe" in types, types
    assert document["profile"]["company"] == COMPANY and document["consents"]["consent"] is True
    assert document["lead"]["state"] == _lead(stack, PERSONAL)["state"]
    assert all("rule" in line and "version" in line for line in document["story"])
    assert any(line["rule"] for line in document["story"]) and document["scores_over_time"]
    assert any(t["to_state"] == "sales-ready" and t["rule"] and t["version"] for t in document["transitions"])
    mailed = {(d["target"], d["status"]) for d in document["deliveries"] if d["kind"] == "email"}
    assert (PERSONAL, "sent") in mailed and (WORK, "sent") in mailed, mailed
    assert document["suppressions"] == {PERSONAL: "unsubscribed", WORK: None}
    (handoff,) = document["handoffs"]
    assert handoff["id"] == task and handoff["status"] in ("open", "escalated") and handoff["log"]
    assert document["aliases"][0]["email"] == WORK and document["merges"][0]["alias"] == work_id
    assert [v["visitor"] for v in document["visitors"]] == [VISITOR]
    if commands:
        cli = _cli(stack, "person", "export", PERSONAL)
        assert cli.returncode == 0, cli.stderr
        from_cli = json.loads(cli.stdout)
        for doc in (from_cli, document):
            doc.pop("exported_at")
            for h in doc["handoffs"]:  # a task's due time moves as it is read; the rest is the same
                h.pop("waiting", None)
        assert from_cli == document

    # the erasure: ops only, from the lead's page, after the box is ticked
    assert stack.http("sales").delete(f"/v1/people/{WORK}").status_code == 403
    page = stack.http()
    page.post("/login", data={"key": "ops-key-0123456789abcdef", "csrf": _csrf(page.get("/login").text)})
    shown = page.get(f"/leads/{WORK}")
    assert shown.status_code == 200 and "Erase this person" in shown.text
    unticked = page.post(f"/leads/{personal_id}/erase", data={"csrf": _csrf(shown.text)})
    assert unticked.status_code == 422 and "Nothing erased" in unticked.text
    erased = page.post(f"/leads/{personal_id}/erase", data={"csrf": _csrf(shown.text), "confirm": "erase"})
    assert erased.status_code == 303 and erased.headers["location"] == "/leads", erased.text
    for who in (PERSONAL, WORK, personal_id, work_id):
        assert page.get(f"/leads/{who}").status_code == 404
        assert ops.get(f"/v1/leads/{who}").status_code == 404
        assert ops.get(f"/v1/people/{who}/export").status_code == 404
    assert ops.delete(f"/v1/people/{WORK}").status_code == 404  # nothing left to erase

    # the record: when, by whom, a keyed pseudonym (never the address nor the lead id)
    ledger = Database.of(stack.settings)
    try:
        from leadflow.people.erasures import of

        (record,) = of(ledger)
    finally:
        ledger.close()
    assert record["pseudonym"] == pseudonym(stack.settings.key_for(KEY_USE), personal_id)
    assert record["by"] == "page (ops)" and record["counts"]["runs"] >= 3 and record["counts"]["mail"] >= 2

    # nothing of them anywhere: Temporal's file, leadflow's, the seen table, the mail, the logs
    time.sleep(2)  # the server writes what it deleted on its own time
    personal = [v.encode() for v in (PERSONAL, WORK, FIRST, LAST, COMPANY, PERSONAL.split("@")[1],
                                       WORK.split("@")[1])]
    assert (home / "temporal.db").exists() and (home / "intake.sqlite").exists()
    assert (home / "leadflow.sqlite").exists() or stack.settings.database_url
    assert _found(home, personal) == {}
    if stack.settings.database_url:  # the PostgreSQL server's files: tables, indexes, its log
        on_disk = _found(pg.data_directory(), personal)
        assert on_disk == {}, _relations(stack.settings.database_url, on_disk)
    # leadflow's database as it answers
    lead_ids = [personal_id.encode(), work_id.encode()]
    # the suppression that stays is a keyed hash: the address's plain SHA-256 is nowhere either
    digests = [address_hash(a).encode() for a in (PERSONAL, WORK)]
    assert _rows_naming(stack.settings.shared_db_url, [*personal, *lead_ids, *digests]) == []
    # nor their lead ids (a plain hash of the address) in leadflow's own files
    ids_left = _found(home, [*lead_ids, *digests])
    assert [f for f in ids_left if not f.startswith("temporal.db")] == [], ids_left
    said = [line for line in logs.lines if any(n.decode().lower() in line.lower() for n in personal)]
    assert said == [], said[:5]
    assert len(logs.lines) > 0

    # the other person keeps their lead, events, deliveries and mail
    kept = ops.get(f"/v1/people/{OTHER}/export").json()
    assert kept["profile"]["first_name"] == "Dev" and [e["id"] for e in kept["events"]] == ["o-signup"]
    assert [d["target"] for d in kept["deliveries"]] == [OTHER] and len(_mail_to(mail, OTHER)) == 1

    # a new sign-up with the address: a new lead, nothing of the old one, its mail still held back
    again = admin.post("/v1/events?wait=true", json={"type": "signup", "lead": {"email": PERSONAL,
                                                                                "consent": True}})
    assert again.status_code == 200, again.text
    fresh = _lead(stack, PERSONAL)
    assert fresh["lead_id"] == personal_id and fresh["aliases"] == [] and fresh["events"] == 1
    assert fresh["profile"].get("company") is None and fresh["open_handoff"] is None
    ledger = Database.of(stack.settings)
    try:
        def held() -> list[dict[str, Any]]:
            return [d for d in ledger.list(lead=personal_id) if d["kind"] == "email"]
        assert until(held, 30)
        assert {d["status"] for d in held()} == {"suppressed"}
        assert ledger.suppressed(PERSONAL) == "unsubscribed" and ledger.suppressed(WORK) is None
    finally:
        ledger.close()
    assert _mail_to(mail, PERSONAL) == []
    ported = ops.get(f"/v1/people/{PERSONAL}/export").json()
    assert [e["type"] for e in ported["events"]] == ["signup"] and ported["lead_ids"] == [personal_id]

    if not commands:
        return
    # the operator's command: asks unless told, says so when there is nobody, erases the other person
    unasked = _cli(stack, "person", "erase", OTHER)
    assert unasked.returncode == 1 and "--yes" in unasked.stderr, unasked.stderr
    assert _cli(stack, "person", "erase", "nobody@nowhere.example", "--yes").returncode == 1
    done = _cli(stack, "person", "erase", OTHER, "--yes", "--by", "maria@acme.example")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["by"] == "maria@acme.example"
    assert ops.get(f"/v1/leads/{OTHER}").status_code == 404 and _mail_to(mail, OTHER) == []


def test_the_mail_sink_loses_every_message_naming_the_person_however_encoded(tmp_path: Path) -> None:
    from leadflow.people.erase import forget_mail

    address = "quorra.vantwistle@fernmail.example"
    split = b"Hello,\r\nwrite to quorra.vantwistle@fern=\r\nmail.example any time.\r\n"  # a soft line break
    messages_ = {
        "1-0.eml": b"To: someone@else.example\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + split,
        "2-0.eml": b"To: =?utf-8?b?" + base64.b64encode(address.encode()) + b"?=\r\n"
                   b"Subject: x\r\n\r\nbody\r\n",
        "3-0.eml": b"To: dev.okafor@brightline.example\r\nSubject: yours\r\n\r\nnothing of hers\r\n",
    }
    for name, raw in messages_.items():
        (tmp_path / name).write_bytes(raw)
    assert forget_mail(tmp_path, {address}) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3-0.eml"]
