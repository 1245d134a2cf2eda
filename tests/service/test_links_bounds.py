"""Opens and clicks are bounded per link token (issue 22): a changed User-Agent is no new event,
one token counts at most a few times an hour and one client address a few dozen times a
minute, whichever API process answers, and a link older than 90 days still works but counts
nothing. The routes run on a bare app with the shared ledger; what would reach the lead is
recorded in place of Temporal. And the webhooks' bounds: a CRM's answer is read only so far,
and a webhook URL's login is never shown."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

import leadflow.api.links as api_links
from leadflow.db.database import Database
from leadflow.db.schema import deliveries
from leadflow.delivery.links import ADDRESS_PER_MINUTE, COUNT_FOR_SECONDS, TOKEN_PER_HOUR, Links, Mail
from leadflow.delivery.machines import Judge
from leadflow.delivery.webhook import MAX_ANSWER, Poster, PostError
from leadflow.operations.deliveries import listing
from leadflow.settings import Settings
from tests.support import pg

SECRET = "links-bounds-secret"
BASE = "https://leadflow.example"
PERSON = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return pg.new_database()


class Told:
    """The events the routes pass on (leadflow.intake.deliver, without Temporal)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    async def __call__(self, client: Any, settings: Any, event: dict[str, Any], *, key: str,
                       door: str) -> None:
        with self._lock:
            self.events.append({**event, "lead": key})

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


@pytest.fixture()
def told(monkeypatch) -> Told:
    record = Told()
    monkeypatch.setattr(api_links, "deliver", record)
    return record


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch) -> Clock:
    # mid-minute and mid-hour, so a test's requests never straddle a window by chance
    fake = Clock((int(time.time()) // 3600) * 3600 + 1800 + 30)
    monkeypatch.setattr(api_links, "time", fake)
    return fake


def api_process(shared_db_url: str) -> TestClient:
    """One API process: its own app, its own Database on the shared database. The client's address
    comes from X-Test-Client (uvicorn takes it from the socket or X-Forwarded-For)."""
    app = FastAPI()
    app.include_router(api_links.router)
    ledger = Database.open(shared_db_url)
    app.state.ctx = SimpleNamespace(links=Links(SECRET, BASE), judge=Judge(), ledger=ledger, client=None,
                                    settings=Settings())

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            scope = {**scope, "client": (headers.get(b"x-test-client", b"203.0.113.9").decode(), 5000)}
        await app(scope, receive, send)

    return TestClient(asgi, base_url=BASE, follow_redirects=False)


def mail(delivery: str = "0123456789abcdef", sent: float | None = None) -> Mail:
    return Mail(lead="lead-1", delivery=delivery, content="welcome-guide",
                sent=int(time.time() - 3600 if sent is None else sent))


def path(link: str) -> str:
    return link.removeprefix(BASE)


def get(web: TestClient, link: str, agent: str = PERSON, client: str = "203.0.113.9") -> httpx.Response:
    return web.get(path(link), headers={"User-Agent": agent, "X-Test-Client": client})


def test_a_new_user_agent_is_no_new_event(tmp_path, told, clock):
    links = Links(SECRET, BASE)
    click, pixel = links.click(mail(), "https://acme.example/guide"), links.open_pixel(mail())
    with api_process(f"sqlite:///{tmp_path / 'l.sqlite'}") as web:
        for i in range(20):
            agent = f"{PERSON} rotating/{i}"
            assert get(web, click, agent).status_code == 302
            assert get(web, pixel, agent).content.startswith(b"GIF89a")
        assert len(told.of("email_click")) == 1 and len(told.of("email_open")) == 1
        # a machine's fetch from the same address and the person's stay two events
        assert get(web, click, agent="curl/8.5.0").status_code == 302
        machine = told.of("email_click")[-1]
        assert len(told.of("email_click")) == 2 and machine["data"]["machine"] is True
        # the next minute, the same person's click is an event again
        clock.now += 60
        get(web, click)
        assert len(told.of("email_click")) == 3


def test_one_token_counts_a_few_times_an_hour_across_api_processes(tmp_path, told, clock):
    ledger = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    link = Links(SECRET, BASE).click(mail(), "https://acme.example/pricing")
    with api_process(ledger) as one, api_process(ledger) as two:
        answers = [get((one, two)[i % 2], link, client=f"198.51.100.{i}") for i in range(3 * TOKEN_PER_HOUR)]
        assert all(a.status_code == 302 and a.headers["location"] == "https://acme.example/pricing"
                   for a in answers)  # every fetch is sent on, counted or not
        assert len(told.of("email_click")) == TOKEN_PER_HOUR
        # the same token spelled another way (its MAC with its base64 padding) is the same token
        body, _, mac = path(link).rpartition("/")[2].partition(".")
        respelled = f"{BASE}/t/click/{body}.{mac}=="
        assert get(one, respelled, client="198.51.100.200").status_code == 302
        assert len(told.of("email_click")) == TOKEN_PER_HOUR
        # another token of the same e-mail has a bound of its own
        other = Links(SECRET, BASE).click(mail(), "https://acme.example/other")
        get(two, other, client="198.51.100.201")
        assert len(told.of("email_click")) == TOKEN_PER_HOUR + 1
        clock.now += 3600  # the next hour
        get(one, link, client="198.51.100.202")
        assert len(told.of("email_click")) == TOKEN_PER_HOUR + 2


def test_one_address_counts_a_few_dozen_times_a_minute(tmp_path, told, clock):
    links = Links(SECRET, BASE)
    pixels = [links.open_pixel(mail(f"{i:016x}")) for i in range(ADDRESS_PER_MINUTE + 10)]
    with api_process(f"sqlite:///{tmp_path / 'l.sqlite'}") as web:
        for pixel in pixels:
            assert get(web, pixel, client="192.0.2.7").status_code == 200
        assert len(told.of("email_open")) == ADDRESS_PER_MINUTE
        get(web, pixels[-1], client="192.0.2.8")  # another address is not held by that one
        assert len(told.of("email_open")) == ADDRESS_PER_MINUTE + 1
        clock.now += 60
        get(web, pixels[-2], client="192.0.2.7")
        assert len(told.of("email_open")) == ADDRESS_PER_MINUTE + 2


def test_an_old_link_still_works_and_counts_nothing(tmp_path, told, clock):
    links = Links(SECRET, BASE)
    old = mail(sent=clock.now - COUNT_FOR_SECONDS - 86400)
    young = mail(sent=clock.now - COUNT_FOR_SECONDS + 86400)
    # a token with no signing time at all (read as it comes, though leadflow never made one)
    unsigned = links._url("click", {"l": "lead-1", "d": "fedcba9876543210", "c": "welcome-guide",
                                    "u": "https://acme.example/unsigned"})
    with api_process(f"sqlite:///{tmp_path / 'l.sqlite'}") as web:
        clicked = get(web, links.click(old, "https://acme.example/old"))
        assert clicked.status_code == 302 and clicked.headers["location"] == "https://acme.example/old"
        assert get(web, links.open_pixel(old)).content.startswith(b"GIF89a")
        assert get(web, unsigned).headers["location"] == "https://acme.example/unsigned"
        assert told.events == []
        get(web, links.click(young, "https://acme.example/young"))
        get(web, links.open_pixel(young))
        assert [e["type"] for e in told.events] == ["email_click", "email_open"]
        assert told.events[0]["data"]["url"] == "https://acme.example/young"


def test_the_ledger_counts_each_hit_once_under_concurrent_processes(url):
    ledgers = [Database.open(url) for _ in range(4)]  # four API processes' connections
    now = time.time()
    try:
        def hit(i: int) -> str:
            ledger = ledgers[i % len(ledgers)]
            return ledger.count_link_hit(f"seen:{i}", now + 60, [("token:t", 7, now + 3600),
                                                                  (f"addr:{i % 3}", 100, now + 60)], now)

        with ThreadPoolExecutor(8) as pool:
            verdicts = list(pool.map(hit, range(40)))
        assert verdicts.count("counted") == 7 and verdicts.count("limited") == 33
        # a fetch seen already is a repeat and uses up nothing
        assert ledgers[0].count_link_hit("seen:0", now + 60, [("token:u", 1, now + 3600)], now) == "repeat"
        assert ledgers[1].count_link_hit("seen:new", now + 60, [("token:u", 1, now + 3600)], now) == "counted"
        # windows that are over go: the same buckets count afresh once their time has passed
        later = now + 7200
        ledgers[2]._link_sweep_at = 0.0
        again = ledgers[2].count_link_hit("seen:0", later + 60, [("token:t", 7, later + 3600)], later)
        assert again == "counted"
    finally:
        for ledger in ledgers:
            ledger.close()


# -- what a webhook lets through (issue 22): its answer, its login --------------------------


def test_a_crms_answer_is_read_only_so_far_and_the_next_post_still_goes():
    """A CRM that answers without end (50 MB here, then it hangs up): the worker reads its first
    MAX_ANSWER bytes and drops the rest with the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sent: list[int] = []

    def serve() -> None:
        for answer in ("flood", "short"):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                if answer == "short":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    continue
                conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 52428800\r\n\r\n")
                chunk, total = b"x" * 65536, 0
                try:
                    while total < 50 * 1024 * 1024:
                        conn.sendall(chunk)
                        total += len(chunk)
                except OSError:  # the worker hung up
                    pass
                sent.append(total)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    poster = Poster(5)
    try:
        flood = poster.post(f"http://127.0.0.1:{port}/hooks", b"{}", {})
        assert flood.status_code == 500 and flood.text == "x" * MAX_ANSWER
        assert poster.post(f"http://127.0.0.1:{port}/hooks", b"{}", {}).text == "ok"
    finally:
        poster.close()
        listener.close()
    thread.join(5)
    assert sent and sent[0] < 50 * 1024 * 1024  # the rest was never read


def test_a_webhook_urls_login_is_never_shown(url):
    secret_url = "https://leadflow:s3cret@pass@crm.example/hooks?who=ops@acme.example"
    ledger = Database.open(url)
    try:
        claim = ledger.claim("handoff-1", kind="handoff", lead="lead-1", target=secret_url, subject="task-1",
                             owner="w1", lease=30)
        assert claim.outcome == "claimed"
        ledger.mark("handoff-1", "retrying", f"attempt 1: URLError for {secret_url}")
        ledger.record("handoff-2", kind="escalation", lead="lead-1", target=secret_url, subject="task-1",
                      status="skipped", detail=f"not an http(s) URL: {secret_url!r}")
        # a row written before the ledger masked anything
        with ledger.engine.begin() as db:
            db.execute(deliveries.insert().values(
                key="old-1", kind="handoff", lead="lead-1", target=secret_url, status="failed",
                detail=f"refused by {secret_url}", created_at=1.0, updated_at=1.0))
            stored = " ".join(str(v) for row in db.execute(select(deliveries)) for v in row
                              if row.key != "old-1")
        assert "s3cret" not in stored and "https://***@crm.example/hooks?who=ops@acme.example" in stored
        shown = listing(ledger) + [ledger.get("old-1")]  # the API, the CLI and the ops page read these
        assert len(shown) == 4 and all("s3cret" not in json.dumps(row) for row in shown)
        assert {row["target"] for row in shown} == {"https://***@crm.example/hooks?who=ops@acme.example"}
        assert ledger.get("handoff-1")["detail"] == \
            "attempt 1: URLError for https://***@crm.example/hooks?who=ops@acme.example"
    finally:
        ledger.close()
    # and what the webhook client says of a URL it cannot use
    with pytest.raises(PostError) as refused:
        Poster(1).post("ftp://leadflow:s3cret@crm.example/hooks", b"{}", {})
    assert "s3cret" not in str(refused.value) and "ftp://***@crm.example/hooks" in str(refused.value)
