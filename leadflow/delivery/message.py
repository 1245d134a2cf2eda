"""A nurture e-mail as it goes on the wire: the rendered template, tracked links (only those the
template itself wrote: see delivery.linkify) and the open pixel, the unsubscribe link in the body
and in the headers (RFC 2369, and RFC 8058's one-click POST), and a Message-ID made from the
delivery key, so the same delivery always carries the same id and a receiver can drop a repeat."""

from __future__ import annotations

import functools
import hashlib
import html
from email.utils import formatdate

from leadflow.delivery import linkify, mime
from leadflow.delivery.content import Rendered
from leadflow.delivery.links import Links, Mail


@functools.lru_cache(maxsize=8)  # every message sent in the same second
def _date(sent: int) -> str:
    return formatdate(sent, usegmt=True)


def message_id(key: str, sender: str) -> str:
    domain = mime.mailbox(sender).rpartition("@")[2] or "leadflow.local"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


def build(rendered: Rendered, *, key: str, sender: str, to: str, mail: Mail, links: Links,
          unsubscribe_url: str) -> bytes:
    clicks: dict[str, str] = {}  # the text and the HTML part share their links

    def tracked(url: str) -> str:
        if url == unsubscribe_url:
            return url
        if url not in clicks:
            clicks[url] = links.click(mail, url)
        return clicks[url]

    # the links the template wrote, tracked before anything is added after them; a URL that came
    # in through the lead's profile is not among them and stays as it is
    text = linkify.replace(rendered.text, rendered.text_links, tracked)
    body = linkify.replace(rendered.html, rendered.html_links,
                           lambda url: html.escape(tracked(html.unescape(url))))
    if unsubscribe_url not in text:
        text = f"{text.rstrip()}\n\n--\nUnsubscribe with one click: {unsubscribe_url}\n"
    if unsubscribe_url not in html.unescape(rendered.html):
        body = (f'{body.rstrip()}\n<p style="color:#777;font-size:12px"><a href="'
                f'{html.escape(unsubscribe_url)}">Unsubscribe</a> with one click.</p>\n')
    pixel = (f'<img src="{html.escape(links.open_pixel(mail))}" width="1" height="1" alt="" '
             'style="display:block;border:0;width:1px;height:1px">')
    body = body.replace("</body>", pixel + "</body>") if "</body>" in body else f"{body.rstrip()}\n{pixel}\n"

    mid = message_id(key, sender)
    return mime.compose([
        ("From", mime.address(sender)),
        ("To", mime.address(to)),
        ("Subject", mime.header(rendered.subject)),
        ("Date", _date(mail.sent)),
        ("Message-ID", mid),
        ("List-Unsubscribe", f"<{unsubscribe_url}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("X-Leadflow-Content", mime.clean(mail.content)),
        # the Message-ID again: some relays (Amazon SES) write their own Message-ID, and a bounce
        # or an abuse report then finds the delivery by this one (leadflow.delivery.inbound)
        ("X-Leadflow-Id", mid),
    ], text, body)
