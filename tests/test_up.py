"""`make up` as a new user sees it: the embedded server, the worker, the API and the pages, the
addresses printed with demo keys made on first run under LEADFLOW_HOME, e-mail caught by the
local SMTP sink and shown on /mail, its unsubscribe link working; SIGTERM stops it all."""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import time

import httpx

from tests.temporal_harness import ROOT, free_port


def test_up_serves_the_api_and_pages_and_prints_where_with_demo_keys(tmp_path):
    http = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "LEADFLOW_HOME": str(tmp_path), "LEADFLOW_DEV_PORT": str(free_port()),
           "LEADFLOW_UI_PORT": str(free_port()), "LEADFLOW_HTTP": http, "LEADFLOW_TASK_QUEUE": "up-test",
           "LEADFLOW_EVAL_PROCESSES": "1"}
    for name in ("LEADFLOW_API_KEYS", "LEADFLOW_SMTP_HOST"):  # a new user has neither
        env.pop(name, None)
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--no-demo"], cwd=ROOT, env=env,
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
        sent = api.post("/v1/events?wait=true", headers={"Authorization": f"Bearer {keys['intake']}"},
                        json={"type": "signup", "lead": {"email": "up@acme.example", "role": "vp"}})
        assert sent.json()["decision"]["state"] == "nurturing"
        lead = api.get("/v1/leads/up@acme.example", headers={"Authorization": f"Bearer {keys['sales']}"})
        assert lead.json()["state"] == "nurturing"
        assert api.get("/login").status_code == 200
        assert "no LEADFLOW_SMTP_HOST: e-mail goes to a local sink" in text
        # the welcome e-mail reached the sink, as a file and on the /mail page
        deadline = time.monotonic() + 30
        while not list((tmp_path / "mail").glob("*.eml")):
            assert time.monotonic() < deadline, "no e-mail reached the local sink"
            time.sleep(0.2)
        (kept,) = (tmp_path / "mail").glob("*.eml")
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
