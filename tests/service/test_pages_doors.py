"""The pages' doors from outside: who is sent to log in, which forms a stale token or a role
refuses (and with which words), and what a missing task, lead, rep or message answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from leadflow.logins import LOGINS
from tests.support.stack import KEYS, Stack

ANA_KEY = "ana-sales-key-0123456789abcdef"  # a sales key that names its rep: the inbox does not ask
CSRF_REFUSED = "the form is stale or not ours (CSRF token); reload the page"
PAGES = ["/inbox", "/tasks/handoff-lead-nothing-1", "/roster", "/leads", "/leads/lead-nothing",
         "/deliveries", "/funnel", "/mail", "/mail/nothing"]
FORMS = ["/inbox/me", "/tasks/handoff-lead-nothing-1/accept", "/tasks/handoff-lead-nothing-1/reject",
         "/tasks/handoff-lead-nothing-1/reassign", "/roster/ana", "/leads/lead-nothing/identify"]


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
