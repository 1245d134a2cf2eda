"""Only the links a content template writes itself are tracked (issue 22): a URL that came from
the lead's profile is never wrapped in a leadflow-signed click link, in the text part or the
HTML part, however it is placed; the template's own links still are. Read back from the bytes
the message writer makes, each click link's token read by the links' own reader. And the mail
sink's page links a List-Unsubscribe value only when it is http(s) or mailto."""

from __future__ import annotations

import email
import email.policy
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from leadflow.delivery import message, sink
from leadflow.delivery.content import load_template
from leadflow.delivery.links import Links, Mail
from tests.support.policy import ROOT

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


# -- the mail sink's page (make up): a List-Unsubscribe value is a link only if http(s) or mailto --


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [v or "" for k, v in attrs if k == "href"]


def _page(tmp_path: Path, header: str, n: int) -> tuple[str, list[str]]:
    """The sink's page of one caught message whose List-Unsubscribe is `header`, as the page's
    route renders it (leadflow.pages.routes.mail_message_page), and the hrefs in it."""
    from leadflow.pages.routes import templates

    raw = (f"From: someone@else.example\r\nTo: rita@acme.example\r\nSubject: Hi\r\n"
           f"List-Unsubscribe: {header}\r\n\r\nHello\r\n")
    (tmp_path / f"1790000000000000000-{n}.eml").write_bytes(raw.encode())
    found = sink.message(tmp_path, f"1790000000000000000-{n}")
    assert found is not None
    unsubscribe = next((v.strip("<> ") for k, v in found["headers"] if k.lower() == "list-unsubscribe"), "")
    page = templates.get_template("mail_message.html").render(msg=found, unsubscribe=unsubscribe, role=None,
                                                              csrf="")
    parser = _Hrefs()
    parser.feed(page)
    return page, [h for h in parser.hrefs if h != "/static/style.css" and h != "/inbox"]


@pytest.mark.parametrize("bad", ["javascript:alert(document.domain)", "JaVaScRiPt:alert(1)",
                                 " javascript:alert(1)", "data:text/html,<script>alert(1)</script>",
                                 "vbscript:msgbox(1)", "//evil.example/u"])
def test_the_sink_page_links_no_script_from_list_unsubscribe(tmp_path, bad):
    page, hrefs = _page(tmp_path, f"<{bad}>", 1)
    assert hrefs == []  # shown, never a link
    assert html.escape(bad.strip(), quote=False) in page or html.escape(bad.strip()) in page


def test_the_sink_page_links_http_and_mailto_unsubscribe_values(tmp_path):
    good = "https://leadflow.example/u/abc.def"
    header = f"<{good}>, <mailto:unsubscribe@acme.example?subject=stop>, <javascript:x()>"
    page, hrefs = _page(tmp_path, header, 2)
    assert hrefs == [good, "mailto:unsubscribe@acme.example?subject=stop"]
    assert "javascript:x()" in page
