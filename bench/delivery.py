"""Deliveries per second through leadflow's delivery activities against the bare send loop, in
the same run: e-mails to a local SMTP server (aiosmtpd, its own process) through `send_email`
(ledger claim, template render, links signed, message built, SMTP send, ledger mark; the middle
four in the worker's delivery processes, as `LEADFLOW_DELIVERY_PROCESSES` says: `--processes`,
0 for the worker itself) against smtplib sending the bytes of a ready-made message of the same
kind (the wire alone); webhooks
to a local HTTP receiver (its own process) through `post_webhook` (claim, signed JSON body, POST,
mark) against httpx posting the same bodies. Both sides use the same number of threads, each
with kept-alive connections; rounds alternate. Target: the activities at no less than 0.7 of the
bare rate. The ledger is SQLite under a temporary home (the embedded default) unless --ledger
names a database URL (each run's keys are its own: a ledger used before counts nothing as sent).
The CPU figures per delivery add the delivery processes' CPU to this process's.
Last line: one JSON object.

    .venv/bin/python bench/delivery.py [--messages 1200] [--rounds 5] [--threads 8] [--ledger URL]
                                       [--processes N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from temporalio.testing import ActivityEnvironment  # noqa: E402

from activities.delivery import Delivery, DeliveryActivities, EmailRequest, WebhookRequest  # noqa: E402
from bench.quick import parse  # noqa: E402
from leadflow.db.database import Database  # noqa: E402
from leadflow.delivery import message  # noqa: E402
from leadflow.delivery.content import ContentStore  # noqa: E402
from leadflow.delivery.links import Links, Mail  # noqa: E402
from leadflow.delivery.pool import MailPool  # noqa: E402
from leadflow.delivery.smtp import Mailer, SmtpConfig  # noqa: E402
from leadflow.delivery.webhook import Poster, signature  # noqa: E402
from leadflow.settings import Settings  # noqa: E402

SENDER = "Acme <news@acme.example>"
SECRET = "bench-webhook-secret"
RECEIVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # the answer in one packet: written line by line, delayed ACKs cost 40 ms each
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
PROFILE = {"first_name": "Rita", "company": "Acme Corp", "role": "director", "email": "rita@acme.example"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def in_threads(threads: int, jobs: list[Any], work: Any, setup: Any = None) -> float:
    """Seconds to run `work(state, job)` for every job on `threads` threads."""
    chunks = [jobs[i::threads] for i in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def run(chunk: list[Any]) -> None:
        state = setup() if setup else None
        barrier.wait()
        for job in chunk:
            work(state, job)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(run, c) for c in chunks]
        barrier.wait()
        start = time.perf_counter()
        for f in futures:
            f.result()
        return time.perf_counter() - start


def cpu_seconds(pool: MailPool | None) -> float:
    """CPU seconds of this process and of the pool's delivery processes (from /proc)."""
    total = time.process_time()
    for pid in pool.pids() if pool is not None else ():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--ledger", default="")
    parser.add_argument("--processes", type=int, default=Settings.model_fields["delivery_processes"].default,
                        help="delivery processes (LEADFLOW_DELIVERY_PROCESSES; its default unless given)")
    args = parse(parser, {"messages": 600, "rounds": 3})
    home = Path(tempfile.mkdtemp(prefix="leadflow-bench-delivery-"))
    smtp_port, http_port = free_port(), free_port()
    servers = [
        subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}",
                          "-c", "aiosmtpd.handlers.Sink"]),
        subprocess.Popen([sys.executable, "-c", RECEIVER, str(http_port)]),
    ]
    try:
        wait_listening(smtp_port)
        wait_listening(http_port)
        figures = bench(args, home, smtp_port, http_port)
    finally:
        for server in servers:
            server.terminate()
            server.wait()
    print(json.dumps(figures))


def bench(args: argparse.Namespace, home: Path, smtp_port: int, http_port: int) -> dict[str, Any]:
    content = ContentStore(ROOT / "content")
    content.reload()
    links = Links("bench-link-secret", "https://leadflow.example")
    ledger = Database.open(args.ledger or f"sqlite:///{home / 'leadflow.sqlite'}")
    hook = f"http://127.0.0.1:{http_port}/hooks"
    smtp = SmtpConfig("127.0.0.1", smtp_port)
    # as worker.delivery_for makes it: the pool started with the worker, before the first e-mail
    pool = MailPool(smtp, SENDER, links, args.processes) if args.processes > 0 else None
    if pool is not None:
        pool.start()
    delivery = Delivery(ledger=ledger, content=content, links=links, sender=SENDER,
                        mailer=Mailer(smtp, pool=args.threads), poster=Poster(10),
                        webhook_for=lambda queue: hook, webhook_secret=SECRET,
                        public_url="https://leadflow.example", pool=pool)
    acts = DeliveryActivities(delivery)
    run = os.urandom(4).hex()  # this run's keys: a --ledger used before has none of them
    # what the bare loops send: a message built the same way, a body of the same size
    template = content.get("welcome-guide")
    mail = Mail(lead="lead-x", delivery="0" * 16, content="welcome-guide", sent=int(time.time()))
    unsubscribe = links.unsubscribe(mail)
    ready = message.build(template.render(PROFILE, unsubscribe), key="bare", sender=SENDER,
                          to=PROFILE["email"], mail=mail, links=links, unsubscribe_url=unsubscribe)
    story = [{"at": "2026-11-29T10:00:00+00:00", "rule": f"rule-{i}", "why": "a line of the story " * 4}
             for i in range(10)]
    body = {"event": "handoff.created", "task": {"id": "handoff-x-1", "queue": "account-executives"},
            "lead": {"profile": PROFILE, "scores": {"fit": 60, "intent": 30}, "story": story}}
    raw = json.dumps(body).encode()

    def bare_smtp_setup() -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", smtp_port)

    def bare_smtp(conn: smtplib.SMTP, n: int) -> None:
        conn.sendmail("news@acme.example", [PROFILE["email"]], ready)

    def bare_http_setup() -> httpx.Client:
        return httpx.Client(timeout=10)

    def bare_http(client: httpx.Client, n: int) -> None:
        answer = client.post(hook, content=raw, headers={
            "Content-Type": "application/json", "Idempotency-Key": f"bare-{n}",
            "X-Leadflow-Signature": signature(SECRET, raw, int(time.time()))})
        answer.raise_for_status()

    def activity_setup() -> ActivityEnvironment:
        return ActivityEnvironment()

    rounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        n = args.messages
        emails = [EmailRequest(key=f"{run}-r{r}-mail-{i}", lead=f"lead-{i}", content="welcome-guide",
                               to=f"lead{i}@acme.example", profile=PROFILE) for i in range(n)]
        hooks = [WebhookRequest(key=f"{run}-r{r}-hook-{i}", kind="handoff", lead=f"lead-{i}",
                                queue="account-executives", task=f"handoff-{r}-{i}-1",
                                idempotency_key=f"handoff-{r}-{i}-1", body=body) for i in range(n)]

        def send(env: ActivityEnvironment, req: EmailRequest) -> None:
            result = env.run(acts.send_email, req)
            assert result.status == "sent", result

        def post(env: ActivityEnvironment, req: WebhookRequest) -> None:
            result = env.run(acts.post_webhook, req)
            assert result.status == "sent", result

        # alternate which side goes first, so neither always meets a warm server
        order = [("bare_smtp", list(range(n)), bare_smtp, bare_smtp_setup),
                 ("activity_smtp", emails, send, activity_setup),
                 ("bare_http", list(range(n)), bare_http, bare_http_setup),
                 ("activity_http", hooks, post, activity_setup)]
        if r % 2:
            order = [order[1], order[0], order[3], order[2]]
        figures = {}
        for name, jobs, work, setup in order:
            cpu = cpu_seconds(pool)
            figures[name] = n / in_threads(args.threads, jobs, work, setup)
            figures[f"{name}_cpu_ms"] = (cpu_seconds(pool) - cpu) / n * 1000
        rounds.append(figures)
        email = figures["activity_smtp"] / figures["bare_smtp"]
        hooks_ratio = figures["activity_http"] / figures["bare_http"]
        print(f"round {r + 1}: e-mails/s bare {figures['bare_smtp']:.0f}, activity "
              f"{figures['activity_smtp']:.0f} ({email:.2f}); webhooks/s bare {figures['bare_http']:.0f}, "
              f"activity {figures['activity_http']:.0f} ({hooks_ratio:.2f})", flush=True)
    delivery.close()
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    smtp_ratio = statistics.median(r["activity_smtp"] / r["bare_smtp"] for r in rounds)
    http_ratio = statistics.median(r["activity_http"] / r["bare_http"] for r in rounds)
    ok = smtp_ratio >= 0.7 and http_ratio >= 0.7
    print(f"e-mail: {med['activity_smtp']:.0f}/s through send_email against {med['bare_smtp']:.0f}/s bare "
          f"(x{smtp_ratio:.2f}); webhooks: {med['activity_http']:.0f}/s through post_webhook against "
          f"{med['bare_http']:.0f}/s bare (x{http_ratio:.2f}); target x0.70: {'met' if ok else 'MISSED'}")
    return {"bench": "delivery", "ledger": ledger.engine.dialect.name, "threads": args.threads,
            "processes": args.processes,
            "messages_per_round": args.messages, "rounds": args.rounds,
            "email_per_s": round(med["activity_smtp"], 1), "email_bare_per_s": round(med["bare_smtp"], 1),
            "email_ratio": round(smtp_ratio, 3), "webhook_per_s": round(med["activity_http"], 1),
            "webhook_bare_per_s": round(med["bare_http"], 1), "webhook_ratio": round(http_ratio, 3),
            # CPU per delivery of this process and the delivery processes: where the activity's time
            # goes (the servers run apart)
            "email_cpu_ms": round(med["activity_smtp_cpu_ms"], 3),
            "email_bare_cpu_ms": round(med["bare_smtp_cpu_ms"], 3),
            "webhook_cpu_ms": round(med["activity_http_cpu_ms"], 3),
            "webhook_bare_cpu_ms": round(med["bare_http_cpu_ms"], 3),
            "target": 0.7, "met": ok}


if __name__ == "__main__":
    main()
