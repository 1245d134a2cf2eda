"""The delivery ledger on SQLite and on a real PostgreSQL server: a key is claimed once, a
retried attempt finds the mark and sends nothing, a lease that ran out is taken over and
counted, suppressions hold, and migrations run once however many processes start at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import inspect

from leadflow.db.database import Database
from tests.support import pg


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return pg.new_database()


def claim(ledger: Database, key: str, owner: str = "w1", lease: float = 30, now: float | None = None):
    return ledger.claim(key, kind="email", lead="lead-1", target="a@b.example", subject="welcome",
                        owner=owner, lease=lease, message_id=f"<{key}@x>", now=now)


def test_a_sent_key_is_never_sent_again_and_a_retry_may_claim_again(url):
    ledger = Database.open(url)
    assert claim(ledger, "k1").outcome == "claimed"
    assert claim(ledger, "k1", owner="w2").outcome == "busy"  # the first attempt holds its lease
    ledger.mark("k1", "retrying", "421 try later")
    again = claim(ledger, "k1", owner="w2")
    assert again.outcome == "claimed" and not again.reclaimed
    ledger.mark("k1", "sent", message_id="<k1@x>")
    done = claim(ledger, "k1", owner="w3")
    assert (done.outcome, done.status, done.message_id) == ("final", "sent", "<k1@x>")
    row = ledger.get("k1")
    assert row["attempts"] == 2 and row["reclaims"] == 0 and row["sent_at"] is not None


def test_a_lease_that_ran_out_is_taken_over_and_counted(url):
    ledger = Database.open(url)
    assert claim(ledger, "k2", lease=10, now=1000).outcome == "claimed"
    assert claim(ledger, "k2", owner="w2", now=1005).outcome == "busy"
    taken = claim(ledger, "k2", owner="w2", now=1011)
    assert taken.outcome == "claimed" and taken.reclaimed
    assert ledger.get("k2")["reclaims"] == 1


def test_many_attempts_at_once_claim_a_key_once(url):
    ledger = Database.open(url)
    start = threading.Barrier(8)

    def attempt(i: int) -> str:
        start.wait()
        return claim(ledger, "k3", owner=f"w{i}").outcome

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert sorted(outcomes) == ["busy"] * 7 + ["claimed"]


def test_suppressions_and_records_keep_the_first_word(url):
    ledger = Database.open(url)
    assert ledger.suppressed(" Ana@Acme.example ") is None
    ledger.suppress("ana@acme.example", "unsubscribed", lead="lead-1")
    ledger.suppress("ANA@acme.example", "bounced")
    assert ledger.suppressed("ana@ACME.example") == "unsubscribed"
    assert ledger.record("k4", kind="email", lead="lead-1", target="", subject="x", status="suppressed",
                         detail="the lead unsubscribed") == "suppressed"
    claim(ledger, "k5")
    assert ledger.record("k5", kind="email", lead="lead-1", target="", subject="x", status="skipped",
                         detail="") == "sending"
    assert ledger.counts() == {"suppressed": 1, "sending": 1}


def test_listing_pages_newest_first(url):
    ledger = Database.open(url)
    for i in range(5):
        claim(ledger, f"p{i}", now=100 + i)
        ledger.mark(f"p{i}", "sent", now=100 + i)
    first = ledger.list(limit=2)
    assert [r["key"] for r in first] == ["p4", "p3"]
    rest = ledger.list(limit=10, before=first[-1]["updated_at"])
    assert [r["key"] for r in rest] == ["p2", "p1", "p0"]
    assert [r["key"] for r in ledger.list(lead="lead-1", status="sent", kind="email", limit=1)] == ["p4"]
    # what ops look for comes from the partial index (migration 0002), newest first
    for key, status in (("f1", "failed"), ("r1", "retrying"), ("f2", "failed")):
        claim(ledger, key, now=200)
        ledger.mark(key, status, "the relay said no", now=200 + int(key[1]))
    assert [r["key"] for r in ledger.list(status="failed")] == ["f2", "f1"]
    assert [r["key"] for r in ledger.list(status="retrying")] == ["r1"]
    assert ledger.list(status="failed' OR '1'='1") == []  # written out as a literal, still quoted
    indexes = {i["name"] for i in inspect(ledger.engine).get_indexes("deliveries")}
    assert "deliveries_attention" in indexes and "deliveries_status_updated" not in indexes


def test_migrations_run_once_when_processes_start_together(url):
    ledgers = [Database(url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda ledger: ledger.migrate(), ledgers))
    tables = set(inspect(ledgers[0].engine).get_table_names())
    assert {"deliveries", "suppressions", "alembic_version"} <= tables
    ledgers[0].migrate()  # and again: nothing to do
    for ledger in ledgers:
        ledger.close()


def test_an_e_mail_to_a_suppressed_address_is_never_claimed(url):
    ledger = Database.open(url)

    def mail(key: str, to: str):
        return ledger.claim(key, kind="email", lead="lead-1", target=to, subject="welcome", owner="w1",
                            lease=30, address=to)

    assert mail("m1", "Kim@Acme.example").outcome == "claimed"
    ledger.mark("m1", "sent")
    assert mail("m2", "kim@acme.example").outcome == "claimed"
    ledger.mark("m2", "retrying", "421 try later")
    ledger.suppress(" KIM@acme.example", "unsubscribed", "lead-1")
    # a fresh delivery, a retry of one that was waiting, and one already sent
    fresh, retry, sent = (mail(key, "kim@acme.example") for key in ("m3", "m2", "m1"))
    assert (fresh.outcome, fresh.status) == ("final", "suppressed") and "unsubscribed" in fresh.detail
    assert (retry.outcome, retry.status) == ("final", "suppressed")
    assert (sent.outcome, sent.status) == ("final", "sent")
    assert [ledger.get(k)["status"] for k in ("m1", "m2", "m3")] == ["sent", "suppressed", "suppressed"]
    assert mail("m4", "other@acme.example").outcome == "claimed"  # only that address


def test_a_writer_lock_left_taken_does_not_stop_delivery(tmp_path):
    """Temporal cancels a sync activity by raising in its thread; landing between taking
    SQLite's in-process writer lock and the code that gives it back, it leaves the lock taken.
    Every later delivery of the worker waited for it forever (found by a hung `make test`)."""
    ledger = Database.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    assert ledger._lock is not None and ledger._lock.acquire()  # taken, and nobody will give it back
    done = threading.Event()

    def deliver() -> None:
        assert claim(ledger, "k-after").outcome == "claimed"
        ledger.mark("k-after", "sent")
        done.set()

    threading.Thread(target=deliver, daemon=True).start()
    assert done.wait(30), "a delivery waited for a lock nobody holds"
    assert ledger.get("k-after")["status"] == "sent"
