"""The pages' doors from outside: who is sent to log in, which forms a stale token or a role
refuses (and with which words), what a missing task, lead, rep or message answers, and an inbox
that reads its rows from one listing, not from a query to each task."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from leadflow.logins import LOGINS
from tests.support.stack import KEYS, Stack, until
from tests.support.temporal_harness import ROOT

ANA_KEY = "ana-sales-key-0123456789abcdef"  # a sales key that names its rep: the inbox does not ask
HOT = {"role": "vp", "budget": 60000, "timeline": "now", "company_size": 300}
CSRF_REFUSED = "the form is stale or not ours (CSRF token); reload the page"
PAGES = ["/inbox", "/tasks/handoff-lead-nothing-1", "/roster", "/leads", "/leads/lead-nothing",
         "/deliveries", "/funnel", "/mail", "/mail/nothing", "/policies", "/policies/lead-lifecycle",
         "/policies/lead-lifecycle/v1", "/policies/lead-lifecycle/v1/report", "/policies/lead-lifecycle/log"]
DESK_FORMS = ["/policies/lead-lifecycle/proposals", "/policies/lead-lifecycle/suggestion",
              "/policies/lead-lifecycle/v1/activation", "/policies/lead-lifecycle/v1/rollback"]
FORMS = ["/inbox/me", "/tasks/handoff-lead-nothing-1/accept", "/tasks/handoff-lead-nothing-1/reject",
         "/tasks/handoff-lead-nothing-1/reassign", "/roster/ana", "/leads/lead-nothing/identify",
         "/policies/lead-lifecycle/v1/approval", *DESK_FORMS]
V1 = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, shared_server: Any) -> Iterator[Stack]:
    keys = ",".join([*(f"{role}:{key}" for role, key in KEYS.items()), f"sales:ana:{ANA_KEY}"])
    with Stack(tmp_path_factory.mktemp("pages"), queue="pages-doors", server=shared_server,
               api_keys=keys) as s:
        yield s


def _token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found[1]


def _session(stack: Stack, key: str) -> tuple[httpx.Client, str]:
    """A browser logged in with `key`, and the CSRF token its forms carry."""
    browser = stack.http()
    login = browser.post("/login", data={"key": key, "csrf": _token(browser.get("/login").text)})
    assert login.status_code == 303, login.text
    return browser, _token(browser.get("/mail").text)


def test_a_stranger_is_sent_to_log_in_and_a_form_needs_its_token(stack: Stack) -> None:
    stranger = stack.http()
    for path in PAGES:
        sent = stranger.get(path)
        assert (sent.status_code, sent.headers["location"]) == (303, f"/login?next={quote(path)}"), path
    for path in FORMS:  # the login first: a stranger's form is not worth checking
        sent = stranger.post(path, data={"csrf": "forged"})
        assert (sent.status_code, sent.headers["location"]) == (303, f"/login?next={quote(path)}"), path
    assert stranger.get("/inbox?queue=x").headers["location"] == "/login?next=/inbox"
    assert stranger.get("/").headers["location"] == "/inbox"
    for path in ("/login", "/logout"):
        refused = stranger.post(path, data={"key": KEYS["sales"], "csrf": "forged"})
        assert (refused.status_code, refused.json()) == (403, {"detail": CSRF_REFUSED}), path
    token = _token(stranger.get("/login").text)
    for given, goes in (("/leads?state=nurturing", "/leads?state=nurturing"), ("//evil.example", "/inbox"),
                        ("https://evil.example/", "/inbox")):
        logged = stranger.post("/login", data={"key": KEYS["ops"], "csrf": token, "next": given})
        assert (logged.status_code, logged.headers["location"]) == (303, goes)
        token = _token(stranger.get("/login").text)
    try:
        unknown = stranger.post("/login", data={"key": "not-a-key-0123456789", "csrf": token})
        assert unknown.status_code == 401 and "That key is not known here." in unknown.text
        intake = stranger.post("/login", data={"key": KEYS["intake"], "csrf": token})
        assert intake.status_code == 403 and "The intake role has no pages." in intake.text
    finally:
        LOGINS._seen.clear()  # these failed logins must not slow another test's logins down
    browser, token = _session(stack, KEYS["sales"])
    assert browser.get("/inbox").status_code == 200
    out = browser.post("/logout", data={"csrf": token})
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert browser.get("/inbox").headers["location"] == "/login?next=/inbox"


def test_a_form_refuses_a_stale_token_then_a_role_without_the_permission(stack: Stack) -> None:
    sales, sales_token = _session(stack, KEYS["sales"])
    for path in FORMS:
        stale = sales.post(path, data={"csrf": "forged", "reason": "x", "queue": "q", "capacity": "1"})
        assert (stale.status_code, stale.json()) == (403, {"detail": CSRF_REFUSED}), path
    ops, ops_token = _session(stack, KEYS["ops"])
    for path, refusal in (("/tasks/handoff-lead-nothing-1/accept", "the ops role may not work tasks"),
                          ("/tasks/handoff-lead-nothing-1/reject", "the ops role may not work tasks"),
                          ("/tasks/handoff-lead-nothing-1/reassign", "the ops role may not work tasks"),
                          ("/roster/ana", "the ops role may not change the roster")):
        refused = ops.post(path, data={"csrf": ops_token, "reason": "x", "queue": "q", "capacity": "1"})
        assert (refused.status_code, refused.json()) == (403, {"detail": refusal}), path
    roster = ops.get("/roster")  # ops read the roster; sales change it
    assert roster.status_code == 200 and 'action="/roster/ana"' not in roster.text
    assert 'action="/roster/ana"' in sales.get("/roster").text
    for path, what in (("/deliveries", "deliveries"), ("/funnel", "the funnel")):
        refused = sales.get(path)
        assert refused.status_code == 403, path
        assert f"The sales role does not see {what}; ops does." in refused.text
        assert ops.get(path).status_code == 200, path
    ana, ana_token = _session(stack, ANA_KEY)
    named = ana.post("/inbox/me", data={"csrf": ana_token, "rep": "ben"})
    assert (named.status_code, named.json()) == (403, {"detail": "your key says who you are"})
    assert 'action="/inbox/me"' not in ana.get("/inbox").text
    unknown = sales.post("/inbox/me", data={"csrf": sales_token, "rep": "nobody"})
    assert (unknown.status_code, unknown.json()) == (422, {"detail": "no rep 'nobody' in the roster"})
    chosen = sales.post("/inbox/me", data={"csrf": sales_token, "rep": "ben"})
    assert (chosen.status_code, chosen.headers["location"]) == (303, "/inbox")
    assert "sales · ben" in sales.get("/inbox").text


def test_the_policy_desk_doors(stack: Stack) -> None:
    """Sales read the desk and approve, never propose or activate; a key naming nobody cannot
    approve; a file uploaded is checked as the text area is; what is not there says so."""
    sales, sales_token = _session(stack, KEYS["sales"])
    assert sales.get("/policies").headers["location"] == "/policies/lead-lifecycle"
    desk = sales.get("/policies/lead-lifecycle")
    assert desk.status_code == 200 and 'data-rule="qualify"' in desk.text
    assert 'class="proposal"' not in desk.text
    for path in DESK_FORMS:
        refused = sales.post(path, data={"csrf": sales_token, "confirm": "activate"})
        assert (refused.status_code, refused.json()) == (
            403, {"detail": "the sales role may not propose or activate policies"}), path
    nobody = sales.post("/policies/lead-lifecycle/v1/approval", data={"csrf": sales_token})
    assert nobody.status_code == 422 and "Your key names no person" in nobody.text
    for path in ("/policies/lead-lifecycle/v9", "/policies/nothing", "/policies/nothing/log"):
        missing = sales.get(path)
        assert missing.status_code == 404 and "There is no policy" in missing.text, path

    ops, ops_token = _session(stack, KEYS["ops"])
    slip = V1.replace("version: 1\n", "version: 7\n", 1).replace("points: 25}", "points: many}", 1)
    refused = ops.post("/policies/lead-lifecycle/proposals", data={"csrf": ops_token, "text": V1},
                       files={"upload": ("mine.yaml", slip.encode(), "application/yaml")})
    assert refused.status_code == 422 and 'class="bad"' in refused.text
    line = next(n for n, text in enumerate(slip.splitlines(), 1) if "points: many}" in text)
    assert re.search(rf'<tr id="line-{line}" class="bad">', refused.text), refused.text[-3000:]
    empty = ops.post("/policies/lead-lifecycle/proposals", data={"csrf": ops_token, "text": "  "})
    assert empty.status_code == 422 and "Nothing to propose" in empty.text
    other = ops.post("/policies/lead-lifecycle/proposals", data={
        "csrf": ops_token, "text": V1.replace("policy: lead-lifecycle", "policy: another", 1)})
    assert other.status_code == 422 and "not &#39;lead-lifecycle&#39;" in other.text
    taken = ops.post("/policies/lead-lifecycle/proposals", data={
        "csrf": ops_token, "text": V1.replace("half_life: 21d", "half_life: 20d")})
    assert taken.status_code == 422 and "version 1 is taken: give this text version 2" in taken.text
    assert re.search(r'<tr id="line-6" class="bad">', taken.text)  # beside its `version:` line
    good = V1.replace("version: 1\n", "version: 7\n", 1)
    proposed = ops.post("/policies/lead-lifecycle/proposals", data={"csrf": ops_token},
                        files={"upload": ("v7.yaml", good.encode(), "application/yaml")})
    assert (proposed.status_code, proposed.headers["location"]) == (303, "/policies/lead-lifecycle/v7")
    page = ops.get("/policies/lead-lifecycle/v7")
    assert page.status_code == 200 and "v7.yaml" in page.text and "(the same text)" not in page.text
    # suggest's proposal opens in the text area, numbered as the next version, nothing proposed yet
    suggested = ops.post("/policies/lead-lifecycle/suggestion", data={"csrf": ops_token})
    assert suggested.status_code == 200 and 'class="note"' in suggested.text
    area = re.search(r'<textarea id="text" name="text"[^>]*>(.*?)</textarea>', suggested.text, re.S)
    assert area is not None and "\nversion: 8\n" in area[1]
    assert ops.get("/policies/lead-lifecycle/v8").status_code == 404
    early = ops.post("/policies/lead-lifecycle/v7/activation",
                     data={"csrf": ops_token, "confirm": "activate"})
    assert early.status_code == 422 and "no approval yet" in early.text


def test_what_is_not_there_is_a_page_saying_so(stack: Stack) -> None:
    sales, token = _session(stack, KEYS["sales"])
    for path, what in (("/tasks/handoff-lead-nothing-1", "task handoff-lead-nothing-1"),
                       ("/tasks/not-a-task", "task not-a-task"),
                       ("/leads/nobody@nowhere.example", "lead nobody@nowhere.example"),
                       ("/mail/nothing", "message nothing")):
        missing = sales.get(path)
        assert missing.status_code == 404 and f"There is no {what}." in missing.text, path
    for path, what in (("/tasks/handoff-lead-nothing-1/accept", "task handoff-lead-nothing-1"),
                       ("/tasks/handoff-lead-nothing-1/reassign", "task handoff-lead-nothing-1"),
                       ("/roster/nobody", "rep nobody"),
                       ("/leads/nobody@nowhere.example/identify", "lead nobody@nowhere.example")):
        missing = sales.post(path, data={"csrf": token, "queue": "elsewhere", "same_as": "x@y.example"})
        assert missing.status_code == 404 and f"There is no {what}." in missing.text, path
    bad_state = sales.get("/leads", params={"state": "x' OR '1'='1"})
    assert bad_state.status_code == 422 and 'class="error"' in bad_state.text
    ops, _ = _session(stack, KEYS["ops"])
    assert ops.get("/deliveries", params={"status": "lost"}).status_code == 422


def test_the_inbox_lists_its_tasks_without_asking_each_one(stack: Stack, monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Seven tasks for account-executives: ana (3) and ben (2) take five, two wait for a free
    rep. The inbox shows them all from one listing: no query to any task's workflow."""
    admin = stack.http("admin")  # ?wait=true answers with the lead: a key that may read it
    names = [f"Pat Inbox {n}" for n in range(7)]
    for n, name in enumerate(names):
        lead = {"email": f"inbox{n}@pages.example"}
        admin.post("/v1/events?wait=true", json={"type": "signup", "lead": {**lead, "name": name, **HOT}})
        admin.post("/v1/events?wait=true", json={"type": "demo_request", "lead": lead})
    listed = lambda: admin.get("/v1/tasks", params={"queue": "account-executives"}).json()["tasks"]  # noqa: E731

    def routed() -> list[dict[str, Any]] | None:
        found = listed()
        return found if len(found) == 7 and all(t["assignment"] for t in found) else None

    tasks = until(routed)
    assert tasks, listed()
    assert sorted(t["assignment"] for t in tasks) == ["open"] * 5 + ["waiting"] * 2

    queries: list[str] = []
    listings: list[str] = []
    query, list_workflows = WorkflowHandle.query, Client.list_workflows

    def counted_query(self: WorkflowHandle[Any, Any], *args: Any, **kwargs: Any) -> Any:
        queries.append(self.id)
        return query(self, *args, **kwargs)

    def counted_listing(self: Client, *args: Any, **kwargs: Any) -> Any:
        listings.append(str(args[0] if args else kwargs.get("query")))
        return list_workflows(self, *args, **kwargs)

    monkeypatch.setattr(WorkflowHandle, "query", counted_query)
    monkeypatch.setattr(Client, "list_workflows", counted_listing)
    ana, _ = _session(stack, ANA_KEY)
    inbox = ana.get("/inbox")
    assert inbox.status_code == 200, inbox.text
    assert queries == [], f"the inbox asked {len(queries)} tasks one by one: {queries}"
    assert len(listings) <= 2, listings
    mine = inbox.text.split('<section class="mine">', 1)[1].split("</section>", 1)[0]
    waiting = inbox.text.split('<section class="unassigned">', 1)[1].split("</section>", 1)[0]
    others = inbox.text.split('<section class="others">', 1)[1].split("</section>", 1)[0]
    assert mine.count("<tr class=") == 3 and "(Ana Ortiz: 3 of 3)" in mine, mine
    assert waiting.count("<tr class=") == 2 and "waiting: no rep free" in waiting, waiting
    assert "ana full (3/3), ben full (2/2)" in waiting, waiting
    assert others.count("<tr class=") == 2 and others.count("Ben Okafor") == 2, others
    assert len(re.findall(r"<td>\d+m</td>", inbox.text)) == 7, inbox.text  # how long each is open
    shown = {name for name in names if name in inbox.text}
    assert shown == set(names), set(names) - shown
    for task in tasks:
        assert f'href="/tasks/{task["id"]}"' in inbox.text
    # the task's own page still asks its task: its SLA, the reason it is sales-ready
    page = ana.get(f"/tasks/{tasks[0]['id']}")
    assert page.status_code == 200 and "fit and buying intent agree" in page.text
    assert re.search(r"4[78]h \d\dm left", page.text), page.text
    assert tasks[0]["id"] in queries
