"""E-mail through the delivery processes (leadflow.delivery.pool) between the ledger's claim and
mark, against a real SMTP server, with a pool process killed by SIGKILL while messages are in
its hands: a message the server never had is sent again on a new process, once; one the server
may have leaves its claim as a crashed worker would, and only a reclaim sends it again."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.delivery import Delivery, DeliveryActivities, DeliveryResult, EmailRequest
from leadflow.db.database import Database
from leadflow.delivery.content import ContentStore
from leadflow.delivery.links import Links
from leadflow.delivery.message import message_id
from leadflow.delivery.pool import MailPool
from leadflow.delivery.smtp import Mailer, SmtpConfig
from leadflow.delivery.webhook import Poster
from tests.support.wire import SmtpCatcher

ROOT = Path(__file__).resolve().parents[2]
SENDER = "Acme <news@acme.example>"
PROFILE = {"first_name": "Rita", "company": "Acme Corp", "role": "director"}


def _delivery(tmp_path: Path, smtp: SmtpCatcher) -> tuple[Delivery, MailPool]:
    """As worker.delivery_for makes it, with two processes of four lanes each."""
    content = ContentStore(ROOT / "content")
    content.reload()
    links = Links("pool-test-secret", "https://leadflow.example")
    config = SmtpConfig("127.0.0.1", smtp.port, timeout=10)
    pool = MailPool(config, SENDER, links, processes=2, lanes=4)
    return Delivery(ledger=Database.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}"), content=content,
                    links=links, sender=SENDER, mailer=Mailer(config), poster=Poster(5),
                    webhook_for=lambda queue: "", webhook_secret="x", public_url="https://leadflow.example",
                    pool=pool), pool


def _request(i: int) -> EmailRequest:
    return EmailRequest(key=f"mail-{i}", lead=f"lead-{i}", content="welcome-guide",
                        to=f"lead{i}@acme.example", profile=PROFILE)


def _until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_pool_process_killed_mid_run_loses_and_doubles_nothing(tmp_path: Path) -> None:
    with SmtpCatcher(hold="rcpt") as smtp:
        delivery, pool = _delivery(tmp_path, smtp)
        acts = DeliveryActivities(delivery)
        results: dict[str, DeliveryResult] = {}

        def send(chunk: list[EmailRequest]) -> None:
            env = ActivityEnvironment()
            for req in chunk:
                results[req.key] = env.run(acts.send_email, req)

        requests = [_request(i) for i in range(40)]
        threads = [threading.Thread(target=send, args=(requests[k::8],)) for k in range(8)]
        try:
            for t in threads:
                t.start()
            # eight messages in flight, each held by the server before its RCPT is answered
            _until(lambda: smtp.holding >= 8, "eight messages held at RCPT")
            os.kill(pool.pids()[0], signal.SIGKILL)
            smtp.release.set()
            for t in threads:
                t.join(60)
            assert all(r.status == "sent" for r in results.values()) and len(results) == 40
            # each arrived once: those the dead process had were sent again on its successor
            assert smtp.ids() == Counter({message_id(r.key, SENDER): 1 for r in requests})
            rows = {row["key"]: row for row in delivery.ledger.list(limit=100)}
            assert {k: (row["status"], row["attempts"], row["reclaims"]) for k, row in rows.items()} == {
                r.key: ("sent", 1, 0) for r in requests}
            assert pool.restarts == 1
        finally:
            smtp.release.set()
            delivery.close()


def test_a_message_the_server_may_have_waits_for_its_lease_and_counts_when_sent_again(tmp_path: Path) -> None:
    with SmtpCatcher(hold="data") as smtp:
        delivery, pool = _delivery(tmp_path, smtp)
        acts = DeliveryActivities(delivery)
        env = ActivityEnvironment()
        # an attempt may run 4 s, the claim's lease: time enough for the retry below to find it
        # still held on a loaded machine (make test's parts share two cores)
        env.info = dataclasses.replace(env.info, start_to_close_timeout=timedelta(seconds=4))
        failed: list[BaseException] = []

        def send() -> None:
            try:
                env.run(acts.send_email, _request(1))
            except ApplicationError as err:
                failed.append(err)

        sender = threading.Thread(target=send)
        try:
            sender.start()
            _until(lambda: smtp.holding == 1, "the message kept, its 250 held back")
            for pid in pool.pids():
                os.kill(pid, signal.SIGKILL)
            sender.join(30)
            smtp.release.set()
            (err,) = failed
            assert isinstance(err, ApplicationError) and err.type == "DeliveryLost"
            row = delivery.ledger.get("mail-1")
            assert row is not None and row["status"] == "sending"
            retry = dataclasses.replace(env.info, attempt=2)
            env.info = retry
            try:  # the claim is still another attempt's
                env.run(acts.send_email, _request(1))
                raise AssertionError("a live claim was taken over")
            except ApplicationError as busy:
                assert busy.type == "DeliveryBusy"
            # the lease runs out: the next attempt takes the claim over, and says so
            time.sleep(max(0.0, row["lease_until"] - time.time()) + 0.1)
            assert env.run(acts.send_email, _request(1)).status == "sent"
            row = delivery.ledger.get("mail-1")
            assert row is not None and (row["status"], row["reclaims"]) == ("sent", 1)
            assert smtp.ids() == Counter({message_id("mail-1", SENDER): 2})  # the same Message-ID twice
        finally:
            smtp.release.set()
            delivery.close()
