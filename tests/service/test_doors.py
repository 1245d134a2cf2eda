"""The doors from outside, as an attacker with one key would try them: events only leadflow may
produce, forged and replayed CRM answers, approvals by made-up owners, YAML that expands without
end, bodies sent before any key is checked, sessions of removed keys, guessed logins, answers in
another person's name, and a shared database that is down."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from leadflow import intake
from leadflow.crm_auth import Replays, sign
from leadflow.db.database import Database
from leadflow.db.schema import roster_reps
from leadflow.delivery.webhook import signature as outbound_signature
from leadflow.keys import Keys
from leadflow.logins import LOGINS
from leadflow.pages.routes import mount
from tests.support.stack import KEYS, Stack
from tests.support.temporal_harness import ROOT

CRM_SECRET = "crm-answers-secret-0123456789abcdef"
WEBHOOK_SECRET = "outbound-webhook-secret-0123456789"
PEOPLE = {  # keys that name their person: role:person:key
    "marketing": ("ops", "marketing-ops@example.com", "marketing-owner-key-0123456789"),
    "sales_owner": ("sales", "sales-ops@example.com", "sales-owner-key-0123456789ab"),
    "mallory": ("ops", "mallory@evil.example", "mallory-key-0123456789abcdef"),
    "ana": ("sales", "ana", "ana-sales-key-0123456789abcdef"),
}
MAX_BODY = 64 * 1024
V1 = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, shared_server):
    keys = [f"{role}:{key}" for role, key in KEYS.items()]
    keys += [f"{role}:{person}:{key}" for role, person, key in PEOPLE.values()]
    with Stack(tmp_path_factory.mktemp("doors"), worker=False, server=shared_server, api_keys=",".join(keys),
               crm_secret=CRM_SECRET, webhook_secret=WEBHOOK_SECRET, max_body=MAX_BODY) as s:
        yield s


def person(stack: Stack, who: str) -> httpx.Client:
    client = stack.http()
    client.headers["Authorization"] = f"Bearer {PEOPLE[who][2]}"
    return client


def test_an_intake_key_moves_no_lead_it_must_not(stack):
    """sales_accept from an intake key converted any lead; email_bounce derailed it; identify
    merged any two leads; ?wait=true read the lead back."""
    intake_key = stack.http("intake")
    lead = {"email": "victim@acme.example"}
    for kind in ("sales_accept", "sales_reject", "sla_breach", "email_bounce", "complaint", "check"):
        single = intake_key.post("/v1/events", json={"type": kind, "lead": lead, "data": {"by": "x"}})
        assert single.status_code == 403, (kind, single.text)
        assert kind in single.json()["detail"][0]["msg"], single.text
        batch = intake_key.post("/v1/events", json=[{"type": kind, "lead": lead}]).json()["results"]
        assert batch[0]["status"] == "refused" and kind in batch[0]["error"], batch
        admin = stack.http("admin").post("/v1/events", json={"type": kind, "lead": lead})
        assert admin.status_code == 403, (kind, admin.text)  # no key at all may send these
    identify = {"type": "identify", "lead": lead, "data": {"same_as": {"email": "other@acme.example"}}}
    refused = intake_key.post("/v1/events", json=identify)
    assert refused.status_code == 403 and "identify" in refused.text and "merge leads" in refused.text
    # a role that may merge gets as far as the lead check (neither is a lead here)
    allowed = stack.http("admin").post("/v1/events", json=identify)
    assert allowed.status_code == 422 and "neither" in allowed.text, allowed.text
    # its own route, for the roles that may merge: sales and ops
    same = {"email": "other@acme.example"}
    assert intake_key.post("/v1/leads/victim@acme.example/same-as", json=same).status_code == 403
    assert stack.http("sales").post("/v1/leads/victim@acme.example/same-as", json=same).status_code == 404
    waited = intake_key.post("/v1/events?wait=true", json={"type": "signup", "lead": lead})
    assert waited.status_code == 403 and "read leads" in waited.text
    # the CLI's door (the operator's own machine) takes identify, never leadflow's own events
    from activities.policies import PolicyStore

    store = PolicyStore(ROOT / "policies", content_dir=ROOT / "content")
    store.reload()
    assert intake.admit(identify, store)["type"] == "identify"
    with pytest.raises(intake.Forbidden, match="sales_accept"):
        intake.admit({"type": "sales_accept", "lead": lead}, store)


def _crm(stack: Stack, path: str, body: bytes, header: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if header is not None:
        headers["X-Leadflow-Signature"] = header
    return stack.http().post(path, content=body, headers=headers)


def test_crm_answers_cannot_be_reflected_rewritten_or_replayed(stack):
    path = "/v1/crm/tasks/handoff-lead-nobody-1/accept"
    now = int(time.time())
    # what leadflow sends its CRM, posted back: the outbound scheme, under either secret
    outgoing = json.dumps({"event": "handoff.created", "task_id": "handoff-lead-nobody-1"}).encode()
    for secret in (WEBHOOK_SECRET, CRM_SECRET):
        reflected = _crm(stack, path, outgoing, outbound_signature(secret, outgoing, now))
        assert reflected.status_code == 401, reflected.text
    # the inbound scheme, signed for this method and path: verified (no such task here), once
    body = json.dumps({"by": "crm-user"}).encode()
    good = sign(CRM_SECRET, "POST", path, body, now)
    assert _crm(stack, path, body, good).status_code == 404
    again = _crm(stack, path, body, good)
    assert again.status_code == 401 and "already used" in again.text
    # the same signature written another way verifies nothing
    t, mac = good.removeprefix("t=").split(",v1=")
    for variant in (f"t={t}, v1={mac}", f"t=0{t},v1={mac}", f"t={t},v1={mac},v1={mac}", f"t={t}.0,v1={mac}",
                    f"v1={mac},t={t}", good.upper()):
        assert _crm(stack, path, body, variant).status_code == 401, variant
    # bound to its path: a signature for accept does not reject, nor another task
    other = "/v1/crm/tasks/handoff-lead-nobody-1/reject"
    fresh = sign(CRM_SECRET, "POST", path, b'{"reason": "x"}', now)
    assert _crm(stack, other, b'{"reason": "x"}', fresh).status_code == 401
    # unknown fields are refused: a body meant for something else is no answer
    extra = json.dumps({"by": "crm", "event": "handoff.created"}).encode()
    refused = _crm(stack, path, extra, sign(CRM_SECRET, "POST", path, extra, now))
    assert refused.status_code == 422 and "event" in refused.text
    # a replay is refused by another API process too: the record is in the shared database
    other_process = Replays(Database.of(stack.settings))
    assert other_process.first_time(int(t), mac) is False
    assert other_process.first_time(int(t), "0" * 64) is True


def test_an_approval_is_the_person_behind_the_key_and_an_owner_of_the_running_version(stack):
    ops = stack.http("ops")
    # a proposal naming made-up owners: its own owner list approves nothing
    v2 = V1.replace("version: 1\n", "version: 2\n", 1).replace(
        "marketing: [marketing-ops@example.com]", "marketing: [mallory@evil.example]").replace(
        "sales: [sales-ops@example.com]", "sales: [mallory@evil.example]")
    proposed = ops.post("/v1/policies/proposals", content=v2, headers={"content-type": "application/yaml"})
    assert proposed.status_code == 201, proposed.text
    url = "/v1/policies/lead-lifecycle/2/approvals"
    mallory = person(stack, "mallory").post(url, json={})
    assert mallory.status_code == 403 and "not an owner" in mallory.text, mallory.text
    anonymous = ops.post(url, json={"as": "marketing-ops@example.com"})  # a key naming nobody
    assert anonymous.status_code == 403 and "names no person" in anonymous.text
    marketing = person(stack, "marketing")
    posing = marketing.post(url, json={"as": "sales-ops@example.com"})
    assert posing.status_code == 403
    assert marketing.post(url, json={}).status_code == 200
    assert marketing.post(url, json={}).status_code == 200  # again: still one person's approval
    early = ops.post("/v1/policies/lead-lifecycle/2/activation", json={"rollout": "move"})
    assert early.status_code == 409 and "no sales owner" in early.text
    approved = person(stack, "sales_owner").post(url, json={})  # a sales key: the sales owner's own
    assert approved.status_code == 200 and approved.json()["can_activate"], approved.text
    log = ops.get("/v1/policies/log").json()["log"]
    approvals = [e for e in log if e["action"] == "approved" and e["version"] == 2]
    assert sorted(e["who"] for e in approvals) == ["marketing-ops@example.com", "sales-ops@example.com"]
    assert all("API key of" in e["detail"] for e in approvals)


def test_yaml_aliases_are_refused_at_once_and_parsing_holds_up_nothing(stack):
    bomb = "a: &a [x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 8)}]\n" for i in range(9))
    started = time.monotonic()
    checked = stack.http("ops").post("/v1/policies/validate", content=bomb,
                                     headers={"content-type": "application/yaml"})
    assert checked.status_code == 200 and not checked.json()["valid"]
    assert "aliases" in checked.json()["problems"][0]["message"]
    roster = stack.http("sales").put("/v1/roster", content="reps: &r [*r]\n",
                                     headers={"content-type": "application/yaml"})
    assert roster.status_code == 422 and "aliases" in roster.text
    assert time.monotonic() - started < 10


def test_bodies_are_capped_before_any_route_or_key_is_looked_at(stack):
    big = b"{" + b" " * (4 * MAX_BODY) + b"}"
    for path in ("/v1/crm/tasks/t-1/accept", "/v1/tasks/t-1/accept", "/codec/decode", "/v1/events"):
        assert stack.http().post(path, content=big).status_code == 413, path

    def chunks():
        for _ in range(8):
            yield b" " * MAX_BODY

    assert stack.http().post("/v1/crm/tasks/t-1/accept", content=chunks()).status_code == 413
    # a chunked body with a small Content-Length beside: what comes is counted, not what is said
    # (no client library sends that, so the request is written by hand)
    host, port = stack.settings.listen
    chunk = b" " * 4096
    with socket.create_connection((host, port), timeout=30) as raw:
        raw.sendall(b"POST /v1/tasks/t-1/accept HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(4 * MAX_BODY // len(chunk)):
                raw.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            raw.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed before the whole body came: as it should
        status = raw.recv(200).split(b"\r\n", 1)[0]
    assert status.split()[1] in (b"400", b"413"), status
    small = stack.http("sales").post("/v1/tasks/t-1/accept", json={})
    assert small.status_code == 404  # under the cap, the route runs as before


def _login(stack: Stack, client: httpx.Client, key: str) -> httpx.Response:
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return client.post("/login", data={"key": key, "csrf": csrf[1], "next": "/inbox"})


def test_a_removed_key_ends_its_sessions_and_guessed_logins_slow_down(stack):
    ctx = stack.app.state.ctx
    browser = stack.http()
    assert _login(stack, browser, KEYS["sales"]).status_code == 303
    assert browser.get("/inbox").status_code == 200
    kept = ctx.keys
    try:
        ctx.keys = Keys(tuple(p for p in kept.pairs if p[0] != "sales"), (), kept.pepper)
        gone = browser.get("/inbox")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/login"), gone.text
    finally:
        ctx.keys = kept
    LOGINS._seen.clear()  # failed logins from this address in tests before (the pages' in e2e/) count too
    try:
        guesser = stack.http()
        statuses = [_login(stack, guesser, f"guess-{n}-0123456789abcdef").status_code for n in range(6)]
        assert statuses[:5] == [401] * 5 and statuses[5] == 429, statuses
        late = _login(stack, guesser, KEYS["sales"])  # even the right key waits now
        assert late.status_code == 429 and int(late.headers["retry-after"]) > 0
    finally:
        LOGINS._seen.clear()


def test_a_session_cookie_is_secure_on_an_https_site():
    for secure in (True, False):
        app = FastAPI()
        mount(app, "session-key", secure=secure)

        @app.get("/set")
        def set_(request: Request) -> dict[str, Any]:
            request.session["role"] = "sales"
            return {}

        cookie = TestClient(app, base_url="https://leadflow.example").get("/set").headers["set-cookie"]
        assert ("secure" in cookie.lower()) is secure, cookie


def test_a_key_that_names_its_person_answers_as_that_person_only(stack):
    ana = person(stack, "ana")
    posing = ana.post("/v1/tasks/handoff-lead-nobody-1/accept", json={"by": "bob"})
    assert posing.status_code == 403 and "ana" in posing.text
    assert ana.post("/v1/tasks/handoff-lead-nobody-1/accept", json={"by": "ana"}).status_code == 404
    roster = ana.put("/v1/roster/reps/zed?as=somebody-else", json={
        "name": "Zed", "email": "zed@acme.example", "queues": ["account-executives"], "capacity": 1})
    assert roster.status_code in (200, 201), roster.text
    ledger = Database.of(stack.settings)
    try:
        with ledger.engine.connect() as db:
            recorded = db.execute(select(roster_reps.c.updated_by)
                                  .where(roster_reps.c.id == "zed")).scalar_one()
    finally:
        ledger.close()
    assert recorded == "ana"  # the key's person, not who the request said


def test_the_shared_database_down_is_a_503_with_retry_after_and_the_loop_goes_on(stack, monkeypatch):
    blocked = threading.Event()

    def down(settings: Any) -> Any:
        blocked.set()
        time.sleep(2)  # a database that takes its time, then fails
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(intake, "aliases_for", down)
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(stack.http("intake").post(
        "/v1/events", json={"type": "signup", "lead": {"email": "slow@acme.example"}})))
    sender.start()
    assert blocked.wait(10)
    started = time.monotonic()
    assert stack.http().get("/healthz").status_code == 200
    assert time.monotonic() - started < 1.5  # answered while the lookup waits on its thread
    sender.join(30)
    assert answers[0].status_code == 503 and answers[0].headers["retry-after"].isdigit(), answers[0].text


def test_a_database_that_never_answers_is_an_error_in_seconds_not_minutes():
    """A PostgreSQL address that takes the connection and says nothing (a hung server, a
    black hole): psycopg alone would wait 130 s while the request's thread waits with it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(OperationalError):
            Database.open(f"postgresql+psycopg://leadflow@127.0.0.1:{port}/leadflow")
        assert time.monotonic() - started < 30


def test_a_queue_nobody_works_is_said_where_the_roster_and_policies_change(stack):
    sales = stack.http("sales")
    nobody_on_enterprise = {"reps": [{"id": "solo", "name": "Solo", "email": "solo@acme.example",
                                      "queues": ["account-executives"], "capacity": 3}]}
    taken = sales.put("/v1/roster", json=nobody_on_enterprise)
    assert taken.status_code == 200, taken.text
    (warning,) = taken.json()["warnings"]
    assert "enterprise-accounts" in warning["message"] and warning["line"] > 1
    checked = stack.http("ops").post("/v1/policies/validate", content=V1,
                                     headers={"content-type": "application/yaml"}).json()
    assert checked["valid"] and "enterprise-accounts" in checked["warnings"][0]["message"]
    back = sales.put("/v1/roster", content=(ROOT / "policies" / "roster.yaml").read_bytes(),
                     headers={"content-type": "application/yaml"})
    assert back.status_code == 200 and back.json()["warnings"] == []
