"""Only the links a content template writes itself are tracked (issue 22): a URL that came from
the lead's profile is never wrapped in a leadflow-signed click link, in the text part or the
HTML part, however it is placed; the template's own links still are. Read back from the bytes
the message writer makes, each click link's token read by the links' own reader."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest

from delivery import message
from delivery.content import load_template
from delivery.links import Links, Mail
from tests.conftest import ROOT

LINKS = Links("linkify-test-secret", "https://leadflow.example")
MAIL = Mail(lead="lead-1", delivery="0123456789abcdef", content="welcome-guide", sent=1_790_000_000)
UNSUBSCRIBE = LINKS.unsubscribe(MAIL)
CLICK = re.compile(r"https://leadflow\.example/t/click/([A-Za-z0-9_.-]+)")
EVIL = "https://evil.example/phish"


def sent(template_file: Path, lead: dict) -> tuple[str, str]:
    """The text and HTML parts of the message as it goes out."""
    rendered = load_template(template_file).render(lead, UNSUBSCRIBE)
    raw = message.build(rendered, key="k-1", sender="Acme <news@acme.example>", to="rita@acme.example",
                        mail=MAIL, links=LINKS, unsubscribe_url=UNSUBSCRIBE)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return (msg.get_body(("plain",)).get_content().replace("\r\n", "\n"),  # type: ignore[union-attr]
            msg.get_body(("html",)).get_content().replace("\r\n", "\n"))  # type: ignore[union-attr]


def targets(part: str) -> list[str]:
    """Where each tracked link in the part redirects to."""
    return [LINKS.read("click", token)["u"] for token in CLICK.findall(part)]


def test_a_url_in_a_profile_field_is_not_tracked_in_the_shipped_welcome_mail():
    text, html = sent(ROOT / "content" / "welcome-guide.yaml", {"first_name": EVIL, "company": EVIL + "2"})
    guide = "https://acme.example/guides/getting-started"
    assert targets(text) == [guide] and targets(html) == [guide]  # the template's own link is
    assert f"Hi {EVIL}," in text and f"<p>Hi {EVIL},</p>" in html  # the value is shown as it is


def template(tmp_path: Path, text: str, html: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(f"subject: Hi\ntext: |\n  {text}\nhtml: |\n  {html}\n")
    return path


@pytest.mark.parametrize(("text", "html"), [
    # the value alone, as a link's text, as an href, or running on from the template's own URL
    ("Site: {{ lead.site }}", '<a href="{{ lead.site }}">your site</a>'),
    ("Go https://acme.example/r?to={{ lead.site }} now",
     '<a href="https://acme.example/r?to={{ lead.site }}">go</a>'),
    ("{{ lead.site }}/more https://acme.example/x{{ lead.none }}y",
     '<a href="{{ lead.site }}/more">x</a> <a href="https://{{ lead.host }}/x">y</a>'),
    ("{% set s = lead.site %}{{ s }} {{ 'see ' ~ lead.site }}", "<p>{{ lead.site | safe }}</p>"),
])
def test_no_value_becomes_a_tracked_link_however_it_is_placed(tmp_path, text, html):
    lead = {"site": EVIL, "host": "evil.example", "none": ""}
    got_text, got_html = sent(template(tmp_path, text, html), lead)
    assert targets(got_text) == [] and targets(got_html) == []
    assert EVIL in got_text or "evil.example" in got_text


def test_the_templates_own_links_are_still_tracked_next_to_values(tmp_path):
    path = template(tmp_path,
                    "{{ lead.site }} https://acme.example/a, then ({{ lead.name }}: https://acme.example/b).",
                    '<a href="{{ lead.site }}">{{ lead.name }}</a>'
                    '<a href="https://acme.example/a?x=1&amp;y=2">a</a>')
    # a value that carries the very characters the renderer brackets values with gains nothing
    lead = {"site": EVIL, "name": "\ue001 https://evil.example/x \ue000"}
    text, html = sent(path, lead)
    assert targets(text) == ["https://acme.example/a", "https://acme.example/b"]
    assert targets(html) == ["https://acme.example/a?x=1&y=2"]
    assert "\ue000" not in text + html and "\ue001" not in text + html
    assert " https://evil.example/x " in text


def test_preview_and_subject_show_values_without_brackets(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("subject: Hi {{ lead.name }}\ntext: Hi {{ lead.name }}\nhtml: <p>{{ lead.name }}</p>\n")
    rendered = load_template(path).render({"name": "Rita <b>"}, UNSUBSCRIBE)
    assert rendered.subject == "Hi Rita <b>" and rendered.text == "Hi Rita <b>"
    assert rendered.html == "<p>Rita &lt;b&gt;</p>"
