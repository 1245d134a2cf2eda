"""Form files checked as a marketer writes them (each problem at its file and line), what a
submission reads as, the bot checks, and double opt-in's hold on an address."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import itsdangerous.timed
import pytest

from leadflow.api.limits import Limiter
from leadflow.db.database import Database
from leadflow.forms.guard import Guard, too_fast
from leadflow.forms.optin import BadToken, OptIn
from leadflow.forms.store import FormStore
from leadflow.forms.submit import read
from leadflow.forms.validate import FormInvalid, load_form_bytes, load_form_file
from leadflow.settings import Settings
from tests.support.temporal_harness import ROOT

SHAPE_BROKEN = b"""\
title: Broken
fields:
  - {name: email, type: email, required: true}
  - {name: role, type: dropdown}
  - {name: consent, type: checkbox}
consent:
  text: I agree.
"""
MEANING_BROKEN = b"""\
fields:
  - {name: email, type: email, required: true}
  - name: size
    type: select
  - {name: consent, type: checkbox, required: false}
  - {name: email, type: text}
consent: {text: I agree., version: 1}
thanks:
  redirect: /thank-you
double_opt_in: true
confirmation: {text: Click here.}
"""


def _problems(raw: bytes) -> list[str]:
    with pytest.raises(FormInvalid) as err:
        load_form_bytes(raw, "forms/broken.yaml", "broken")
    return [str(p) for p in err.value.problems]


def test_a_broken_file_is_refused_at_each_line_with_what_to_write():
    assert _problems(SHAPE_BROKEN) == [
        "forms/broken.yaml:4: fields[1] (role).type: unknown type 'dropdown'; a field is one of email, text, "
        "textarea, number, select, checkbox",
        "forms/broken.yaml:6: consent: version is required",
    ]
    assert _problems(MEANING_BROKEN) == [
        "forms/broken.yaml:3: fields[1] (size): a select needs options (the values a person may pick)",
        "forms/broken.yaml:5: fields[2] (consent).required: the consent checkbox is required when consent "
        "is set",
        "forms/broken.yaml:6: fields[3] (email).name: the field 'email' is listed twice (first at line 2)",
        "forms/broken.yaml:9: thanks.redirect: '/thank-you' is not a URL (https://...)",
        "forms/broken.yaml:11: confirmation.text: the text must hold {link}: the confirmation link goes "
        "there",
    ]
    assert _problems(b"fields: [{name: name, type: text}]\n") == [
        "forms/broken.yaml:1: fields: a form needs a field of type email: the lead is named by its address"]
    (unclosed,) = _problems(b"fields:\n  - {name: email, type: email, required: true\n")
    assert unclosed.startswith("forms/broken.yaml:3: broken YAML: ")


def test_the_command_says_ok_or_each_problem_and_exits_so(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(MEANING_BROKEN)
    run = [sys.executable, "-m", "leadflow", "form", "validate"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    shipped = str(ROOT / "forms" / "signup.yaml")
    good = subprocess.run([*run, shipped], capture_output=True, text=True, env=env)
    assert good.returncode == 0 and good.stdout.strip().endswith("signup.yaml: ok (form /f/signup)")
    bad = subprocess.run([*run, shipped, str(broken)], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "signup.yaml: ok" in bad.stdout
    assert bad.stderr.splitlines()[0] == (f"{broken}:3: fields[1] (size): a select needs options (the "
                                          "values a person may pick)")


def test_the_shipped_form_asks_what_the_shipped_policy_scores():
    form = load_form_file(ROOT / "forms" / "signup.yaml")
    assert [f.name for f in form.fields] == ["email", "name", "company", "role", "company_size", "timeline",
                                             "consent"]
    roles = {o.value for o in form.by_name["role"].options}
    # the policy's decision_roles, and the roles its influencer rule reads
    assert {"owner", "founder", "c-level", "vp", "director", "manager", "lead"} <= roles
    assert {"now", "this-quarter", "next-quarter"} <= {o.value for o in form.by_name["timeline"].options}
    assert form.by_name["company_size"].type == "number" and form.by_name["consent"].required
    assert form.consent is not None and form.min_fill_seconds <= 3


def test_a_submission_reads_as_the_profile_and_says_what_is_wrong_beside_each_field():
    form = load_form_file(ROOT / "forms" / "signup.yaml")
    good = read(form, {"email": " ana@acme.example ", "name": "Ana", "role": "vp", "company_size": "1,200",
                       "timeline": "now", "consent": "on", "company": ""})
    assert good.errors == {} and good.consented
    assert good.profile == {"email": "ana@acme.example", "name": "Ana", "role": "vp", "company_size": 1200,
                            "timeline": "now"}
    bad = read(form, {"email": "ana@acme", "name": "n" * 201, "role": "vp ", "company_size": "0",
                      "consent": "off"})
    assert bad.errors == {
        "email": "This does not look like an e-mail address (name@company.com)",
        "name": "At most 200 characters, please (this is 201)",
        "company_size": "At least 1, please",
        "consent": "Tick the box to agree: we need your consent to sign you up"}
    assert bad.typed["name"] == "n" * 201 and bad.typed["consent"] is False and "role" not in bad.errors


def test_bots_meet_the_honeypot_the_fill_time_and_the_rate():
    form = load_form_file(ROOT / "forms" / "signup.yaml")
    now = time.time()
    ms = lambda seconds_ago: str(int((now - seconds_ago) * 1000))  # noqa: E731
    guard = Guard(Limiter(0.0, 3))  # three submits per address, none back
    assert guard.refuse(form, {"homepage": "http://spam"}, "10.0.0.1", now) == "honeypot"
    assert guard.refuse(form, {"lf_started": ms(1)}, "10.0.0.2", now) == "too_fast"
    assert guard.refuse(form, {"lf_started": ms(4)}, "10.0.0.2", now) is None
    assert guard.refuse(form, {}, "10.0.0.2", now) is None  # no script on the page: no fill time
    assert guard.refuse(form, {}, "10.0.0.2", now) == "rate"
    assert guard.refuse(form, {}, "10.0.0.3", now) is None  # another address has its own
    assert not too_fast(form, ms(-30), now)  # a browser clock ahead of ours is not judged
    assert not too_fast(form, "soon", now)


def test_double_opt_in_holds_only_its_own_suppression(tmp_path, monkeypatch):
    ledger = Database.open(f"sqlite:///{tmp_path}/ledger.db")
    settings = Settings(home=tmp_path, secret="s" * 40, public_url="https://leads.acme.example")
    optin = OptIn(settings, ledger)
    form = load_form_bytes(b"fields: [{name: email, type: email, required: true}, "
                           b"{name: consent, type: checkbox}]\n"
                           b"consent: {text: Yes., version: v2}\ndouble_opt_in: true\n", "news.yaml", "news")
    try:
        optin.hold("new@acme.example", "lead-1", form)
        link = optin.link(form, "lead-1", "new@acme.example")
        assert link.startswith("https://leads.acme.example/f/news/confirm?t=") and "new@acme" not in link
        pending = optin.read(form, link.split("t=")[1])
        assert (pending.form, pending.lead, pending.version) == ("news", "lead-1", "v2")
        with pytest.raises(BadToken):
            optin.read(form, link.split("t=")[1][:-2] + "xx")
        other = load_form_bytes(b"fields: [{name: email, type: email, required: true}]\n", "b.yaml", "b")
        with pytest.raises(BadToken):  # a link of one form confirms nothing at another
            optin.read(other, link.split("t=")[1])
        with monkeypatch.context() as past:  # a link signed 31 days ago has expired
            then = time.time() - 31 * 86400
            past.setattr(itsdangerous.timed.time, "time", lambda: then)
            old = optin.link(form, "lead-1", "new@acme.example").split("t=")[1]
        with pytest.raises(BadToken, match="expired"):
            optin.read(form, old)
        assert ledger.suppressed("new@acme.example") == "unconfirmed"
        optin.release(pending.address)
        assert ledger.suppressed("new@acme.example") is None
        # an address that unsubscribed stays so, whatever a form and its link say
        ledger.suppress("gone@acme.example", "unsubscribed", "lead-2")
        optin.hold("gone@acme.example", "lead-2", form)
        token = optin.link(form, "lead-2", "gone@acme.example").split("t=")[1]
        optin.release(optin.read(form, token).address)
        assert ledger.suppressed("gone@acme.example") == "unsubscribed"
    finally:
        ledger.close()


def test_a_form_file_changed_is_served_changed(tmp_path):
    (tmp_path / "a.yaml").write_text("title: One\nfields: [{name: email, type: email, required: true}]\n")
    store = FormStore(tmp_path)
    assert store.get("a").title == "One" and store.get("../a") is None
    (tmp_path / "a.yaml").write_text("title: Two, longer\n"
                                     "fields: [{name: email, type: email, required: true}]\n")
    (tmp_path / "b.yaml").write_text("fields: [{name: email, type: dropdown}]\n")  # refused: not served
    store.refresh(now=time.monotonic() + 5)
    assert store.get("a").title == "Two, longer" and store.get("b") is None


def test_the_e_mail_field_names_the_lead_whatever_its_name():
    form = load_form_bytes(b"fields:\n  - {name: work_email, type: email, required: true}\n"
                           b"  - {name: newsletter, type: checkbox}\n  - {name: note, type: textarea, "
                           b"profile: need}\n", "contact.yaml", "contact")
    sub = read(form, {"work_email": "ana@acme.example", "note": "a CRM for 40 people"})
    assert sub.errors == {}
    assert sub.profile == {"email": "ana@acme.example", "newsletter": False, "need": "a CRM for 40 people"}
