"""`make up` as a new user sees it: the embedded server, the worker, the API and the pages, the
addresses printed with demo keys made on first run under LEADFLOW_HOME, e-mail caught by the
local SMTP sink and shown on /mail, its unsubscribe link working; SIGTERM stops it all."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx

from tests.support.temporal_harness import ROOT, free_port


def test_up_serves_the_api_and_pages_and_prints_where_with_demo_keys(tmp_path):
    http, scrape = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {**os.environ, "LEADFLOW_HOME": str(tmp_path), "LEADFLOW_DEV_PORT": str(free_port()),
           "LEADFLOW_METRICS_ADDR": scrape,
           "LEADFLOW_UI_PORT": str(free_port()), "LEADFLOW_HTTP": http, "LEADFLOW_TASK_QUEUE": "up-test",
           "LEADFLOW_EVAL_PROCESSES": "1"}
    for name in ("LEADFLOW_API_KEYS", "LEADFLOW_SMTP_HOST"):  # a new user has neither
        env.pop(name, None)
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen([sys.executable, "-m", "leadflow", "up"], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "worker and API running" not in log.read_text():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        text = log.read_text()
        assert f"sales inbox:  http://{http}/inbox" in text
        assert f"API docs:     http://{http}/docs" in text and "Temporal UI:  http://127.0.0.1:" in text
        keys = dict(line.split(" key:", 1) for line in text.splitlines() if " key:" in line)
        keys = {role.strip(): key.strip() for role, key in keys.items()}
        assert set(keys) == {"sales", "ops", "intake"}
        stored = (tmp_path / "api-keys").read_text()
        assert all(f"{role}:{key}" in stored for role, key in keys.items())
        assert oct((tmp_path / "api-keys").stat().st_mode & 0o777) == "0o600"
        api = httpx.Client(base_url=f"http://{http}", timeout=30)
        assert api.get("/healthz").json() == {"ok": True}
        # the four-lead demo, as the metrics tell it: from the worker's address and the API's
        assert f"metrics:      http://{scrape}/metrics" in text
        # not a terminal: the log is JSON lines, with no address in them
        logged = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert any(entry["logger"] == "leadflow.worker" and "worker on task queue" in entry["msg"]
                   for entry in logged), text[-2000:]
        # (a policy's ruleset name, lead-lifecycle@v1#a55de2c1, is no address and is shown)
        addresses = re.compile(r"[\w.+-]+@(?!v\d+#[0-9a-f]{8})[\w-]+(\.[\w-]+)+")
        assert not [entry for entry in logged if addresses.search(json.dumps(entry))]
        for scraped in (httpx.get(f"http://{scrape}/metrics").text, api.get("/metrics").text):
            assert _sum(scraped, "leadflow_events_total", type="signup", door="demo") == 4
            assert _sum(scraped, "leadflow_handoffs_total", event="opened") == 1
            assert _sum(scraped, "leadflow_transitions_total", to_state="disqualified") == 1
            assert _sum(scraped, "leadflow_transitions_total", to_state="sales-ready", rule="qualify") == 1
            assert _sum(scraped, "leadflow_evaluation_seconds_count") >= 7  # each demo event, and checks
            assert _sum(scraped, "leadflow_deliveries_total", kind="email", status="sent") >= 1
            assert _sum(scraped, "temporal_workflow_task_queue_poll_succeed_total") > 0  # the SDK's own
            assert re.search(r'^leadflow_leads\{[^}]*state="nurturing"[^}]*\} \d', scraped, re.M)  # counted
            assert "@" not in "".join(line for line in scraped.splitlines() if line.startswith("leadflow_"))
        signup = {"type": "signup", "lead": {"email": "up@acme.example", "role": "vp"}}
        intake = {"Authorization": f"Bearer {keys['intake']}"}
        # the intake key sends; the lead it does not read (?wait=true answers with it)
        assert api.post("/v1/events?wait=true", headers=intake, json=signup).status_code == 403
        sent = api.post("/v1/events", headers=intake, json=signup)
        assert sent.json()["results"][0]["status"] == "accepted", sent.text
        lead = _until_state(api, keys["sales"], "up@acme.example", "nurturing")
        assert lead["state"] == "nurturing"
        assert api.get("/login").status_code == 200
        assert "no LEADFLOW_SMTP_HOST: e-mail goes to a local sink" in text
        # the welcome e-mail reached the sink, as a file and on the /mail page
        deadline = time.monotonic() + 30
        mail = tmp_path / "mail"
        while not (mine := [p for p in mail.glob("*.eml") if b"up@acme.example" in p.read_bytes()]):
            assert time.monotonic() < deadline, "no e-mail reached the local sink"
            time.sleep(0.2)
        (kept,) = mine  # the demo's leads got theirs too
        welcome = email.message_from_bytes(kept.read_bytes(), policy=email.policy.default)
        assert welcome["To"] == "up@acme.example" and welcome["X-Leadflow-Content"] == "welcome-guide"
        page = httpx.Client(base_url=f"http://{http}", timeout=30)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.get("/login").text).group(1)
        page.post("/login", data={"key": keys["sales"], "csrf": csrf, "next": "/mail"})
        listing = page.get("/mail")
        assert listing.status_code == 200 and welcome["Subject"] in listing.text
        shown = page.get(f"/mail/{kept.stem}")
        unsubscribe = welcome["List-Unsubscribe"].strip("<>")
        assert shown.status_code == 200 and unsubscribe in shown.text
        # and its unsubscribe link works, from the page to the lead
        assert unsubscribe.startswith(f"http://{http}/u/")
        assert "unsubscribed" in api.post(unsubscribe, data={"confirm": "yes"}).text
        deadline = time.monotonic() + 30
        while api.get("/v1/leads/up@acme.example",
                      headers={"Authorization": f"Bearer {keys['sales']}"}).json()["state"] != "derailed":
            assert time.monotonic() < deadline, "the unsubscribe never reached the lead"
            time.sleep(0.2)
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 143
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]  # a stop is no error
    time.sleep(1)
    leftover = subprocess.run(["pgrep", "-f", f"--db-filename {tmp_path}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "the embedded Temporal server outlived `leadflow up`"


def _sum(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels` (Prometheus' text format)."""
    total = 0.0
    for line in text.splitlines():
        found = re.match(rf"^{re.escape(name)}(?:{{(.*)}})? (\S+)$", line)
        if not found:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(found.group(2))
    return total


def _until_state(api: httpx.Client, key: str, who: str, state: str, seconds: float = 30) -> dict:
    """The lead as sales read it, once in `state` (an event is applied a moment after it is taken)."""
    deadline = time.monotonic() + seconds
    while True:
        found = api.get(f"/v1/leads/{who}", headers={"Authorization": f"Bearer {key}"})
        if (found.status_code == 200 and found.json()["state"] == state) or time.monotonic() > deadline:
            return found.json()
        time.sleep(0.2)
