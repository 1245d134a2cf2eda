"""Marketing's templates beside the policies: checked with the policy (`file:line: message`),
refused by the worker's store, previewed by a person."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from activities.policies import NoPolicy, PolicyStore
from leadflow.delivery.content import ContentInvalid, ContentStore, NoTemplate, load_template
from tests.support.policy import ROOT


@pytest.fixture()
def layout(tmp_path: Path) -> Path:
    """A copy of policies/ and content/ side by side, to break."""
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    shutil.copytree(ROOT / "content", tmp_path / "content")
    return tmp_path


def leadflow(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leadflow", *args], capture_output=True, text=True,
                          cwd=cwd, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_a_send_without_a_template_and_a_template_reading_what_no_lead_has_are_refused(layout):
    policy = layout / "policies" / "lead-lifecycle.v1.yaml"
    (layout / "content" / "case-study.yaml").unlink()
    roi = layout / "content" / "roi-calculator.yaml"
    roi.write_text(roi.read_text().replace(
        "Hi {{ lead.first_name | default('there') }},\n",
        "Hi {{ lead.first_name }},\n  Your shoe size: {{ lead['shoe_size'] }} {{ lead.get('hat') }}\n", 1))
    out = leadflow("policy", "validate", str(policy))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    send = line_of(policy, "send: case-study")
    assert (f"{policy}:{send}: track awareness: content 'case-study' has no template: "
            f"{layout / 'content' / 'case-study.yaml'} does not exist") in out.stderr
    shoe = line_of(roi, "shoe_size")
    assert f"{roi}:{shoe}: roi-calculator: lead.shoe_size: the lead profile has no such field" in out.stderr
    assert f"{roi}:{shoe}: roi-calculator: lead.hat:" in out.stderr
    assert "lead.first_name:" not in out.stderr  # declared in the policy's profile
    # the worker's store refuses that version too: no valid policy at all
    store = PolicyStore(layout / "policies")
    store.reload()
    with pytest.raises(NoPolicy):
        store.active()


@pytest.mark.parametrize(("change", "message"), [
    (("subject: \"", "subject: \"{{ lead.first_name "), "subject: template syntax: expected token"),
    (("Hi {{ lead.first_name", "Hi {{ leed.first_name"), "text: unknown variable 'leed'"),
    (("subject:", "subjekt:"), "unknown key 'subjekt'"),
])
def test_template_mistakes_point_at_their_line(layout, change, message):
    path = layout / "content" / "whats-new.yaml"
    old, new = change
    path.write_text(path.read_text().replace(old, new, 1))
    out = leadflow("policy", "validate", str(layout / "policies" / "lead-lifecycle.v1.yaml"))
    assert out.returncode == 1
    line = line_of(path, new.strip())
    assert f"{path}:{line}: whats-new: {message}" in out.stderr, out.stderr


def test_a_loop_variable_is_no_unknown_variable_and_html_is_escaped(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text('subject: "Hi {{ lead.first_name }}"\n'
                    "text: |\n  {% for x in [1, 2] %}{{ x }}{% endfor %}\n"
                    "html: |\n  <p>{{ lead.company }}</p>\n")
    rendered = load_template(path).render({"first_name": "A\r\nBcc: x@evil", "company": "<b>"}, "u")
    assert rendered.subject == "Hi A Bcc: x@evil"  # one header line, whatever the profile holds
    assert rendered.text.startswith("12") and "&lt;b&gt;" in rendered.html


def test_the_sandbox_keeps_templates_out_of_python(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text('subject: "x"\ntext: "{{ lead.__class__.__mro__ }}"\nhtml: "x"\n')
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        load_template(path).render({}, "u")


def test_the_store_keeps_the_last_good_template(layout):
    store = ContentStore(layout / "content")
    store.reload()
    good = store.get("last-call").sha
    path = layout / "content" / "last-call.yaml"
    path.write_text(path.read_text().replace("{{ lead.first_name", "{{ lead.first_name }", 1))
    notes = store.reload()
    assert any("refused" in n for n in notes) and store.get("last-call").sha == good


def test_preview_renders_one_template_with_a_lead(tmp_path):
    lead = tmp_path / "lead.json"
    lead.write_text('{"email": "ana@acme.example", "first_name": "Ana", "company": "Acme"}')
    out = leadflow("content", "preview", "welcome-guide", "--lead", str(lead))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Subject: Welcome to Acme, Ana\nTo: ana@acme.example\n")
    assert "on behalf of Acme." in out.stdout and "--- html ---" in out.stdout
    missing = leadflow("content", "preview", "no-such", "--lead", str(lead))
    assert missing.returncode == 1 and "no template 'no-such'" in missing.stderr
    assert "welcome-guide" in missing.stderr  # the ids there are


def test_a_content_id_is_never_a_path_in_a_policy(layout):
    policy = layout / "policies" / "lead-lifecycle.v1.yaml"
    # content/../policies/roster.yaml is a file: a send must not reach it
    policy.write_text(policy.read_text().replace("send: welcome-guide}", "send: ../policies/roster}", 1))
    out = leadflow("policy", "validate", str(policy))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    line = line_of(policy, "send: ../policies/roster")
    said = [s for s in out.stderr.splitlines() if s.startswith(f"{policy}:{line}: ")]
    assert any("send: '../policies/roster' does not match '^[a-z0-9][a-z0-9_-]{0,99}$'" in s for s in said), \
        out.stderr
    assert "roster.yaml" not in out.stderr  # never opened as a template


def test_the_content_loader_takes_only_content_ids(layout):
    content = layout / "content"
    (content / "Welcome Guide.yaml").write_text((content / "welcome-guide.yaml").read_text())
    store = ContentStore(content)
    notes = store.reload()
    assert any("Welcome Guide.yaml: refused" in n and "not a content id" in n for n in notes), notes
    for bad in ("Welcome Guide", "../content/welcome-guide", "welcome-guide/", ""):
        with pytest.raises(NoTemplate):
            store.get(bad)
    with pytest.raises(ContentInvalid) as refused:
        load_template(content / "welcome-guide.yaml", "../content/welcome-guide")
    assert "not a content id" in str(refused.value)
    # every template shipped loads under its own id, and every id the shipped policy names is one
    shipped = sorted(p.stem for p in (ROOT / "content").glob("*.yaml"))
    assert shipped and all(store.get(name).id == name for name in shipped)
    assert leadflow("policy", "validate", str(ROOT / "policies" / "lead-lifecycle.v1.yaml")).returncode == 0


def test_with_topics_listed_every_template_sent_names_one_of_them(layout):
    policy = layout / "policies" / "lead-lifecycle.v1.yaml"
    webinar, news = layout / "content" / "webinar-invite.yaml", layout / "content" / "whats-new.yaml"
    webinar.write_text(webinar.read_text().replace("topic: events", "topic: parties"))
    news.write_text("".join(line for line in news.read_text().splitlines(keepends=True)
                            if not line.startswith("topic:")))
    out = leadflow("policy", "validate", str(policy))
    assert out.returncode == 1
    assert (f"{webinar}:1: webinar-invite: topic 'parties' is not one of the topics of policy "
            "lead-lifecycle (guides, events, news)") in out.stderr
    assert f"{news}:1: whats-new: no topic: policy lead-lifecycle lists the topics" in out.stderr
    bad = layout / "content" / "case-study.yaml"
    bad.write_text(bad.read_text().replace("topic: guides", "topic: Big Guides"))
    with pytest.raises(ContentInvalid) as refused:
        load_template(bad)
    assert "topic: 'Big Guides' is not a topic's name" in str(refused.value.problems[0])
