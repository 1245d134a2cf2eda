"""Which links of a rendered e-mail leadflow tracks: only those the content template itself
writes, never one that came in through a value (issue 22). Tracking a link means signing a
redirect to it, so a profile field such as `first_name: https://evil.example/phish`, wrapped
like the template's own links, would come back as a leadflow-signed redirect to anywhere.

While a template renders, Jinja's `finalize` brackets everything a `{{ … }}` puts out (the
lead's profile, the unsubscribe link, anything computed) between two private-use characters.
`split` takes them out again and returns the part as it reads with the spans of the links that
only the template's own text made: a URL with any character from a value in it (a value alone,
or the template's `https://acme.example/?ref=` running into `{{ lead.id }}`) is left as it is.
The same holds for the text part's bare URLs and the HTML part's `href="…"`."""

from __future__ import annotations

import bisect
import re
from typing import Any

from markupsafe import Markup

OPEN, CLOSE = "\ue000", "\ue001"  # private use: no template or value means anything by them
_MARKS = str.maketrans("", "", OPEN + CLOSE)
_MARK = re.compile("[\ue000\ue001]")

# a bare URL in the text part (its trailing punctuation is the sentence's), an href in the HTML
URL = re.compile(r"https?://[^\s<>\"')\]]+[^\s<>\"')\].,;:!?]")
HREF = re.compile(r'href\s*=\s*"(https?://[^"]+)"', re.IGNORECASE)

Spans = tuple[tuple[int, int], ...]


def mark(value: Any) -> Any:
    """Jinja's `finalize` for content templates: the output of every `{{ … }}`, bracketed. A value
    that holds the brackets itself loses them, so it cannot close its own bracket early."""
    if isinstance(value, Markup):  # already escaped HTML (a macro's output): stays Markup
        return Markup(OPEN + str(value).translate(_MARKS) + CLOSE)
    return OPEN + str(value).translate(_MARKS) + CLOSE


def strip(marked: str) -> str:
    return marked.translate(_MARKS)


def split(marked: str, pattern: re.Pattern[str]) -> tuple[str, Spans]:
    """The part without the brackets, and the spans (start, end) of the first group of
    `pattern` (the whole match without groups) where the whole match is the template's own text."""
    if OPEN not in marked:  # no value in this part at all
        return marked, tuple(_span(m) for m in pattern.finditer(marked))
    pieces: list[str] = []
    starts: list[int] = []  # where each value's text starts and ends in the clean part (an
    ends: list[int] = []  # empty value too: a URL with one inside it is not the template's alone)
    depth, at, size = 0, 0, 0
    for m in _MARK.finditer(marked):
        pieces.append(marked[at:m.start()])
        size += m.start() - at
        at = m.end()
        if m.group() == OPEN:
            depth += 1
            if depth == 1:
                starts.append(size)
        elif depth > 0:
            depth -= 1
            if depth == 0:
                ends.append(size)
    pieces.append(marked[at:])
    if depth > 0:  # never closed (a template that writes the bracket itself): a value to the end
        ends.append(size + len(marked) - at)
    clean = "".join(pieces)
    spans = []
    for m in pattern.finditer(clean):
        # the values are in order and apart: the last one starting before the match's end is
        # the only one that can reach into it (an empty one, only strictly inside it)
        i = bisect.bisect_left(starts, m.end()) - 1
        if i >= 0 and ends[i] > m.start():
            continue  # a value's text is in this link: it is not the template's
        spans.append(_span(m))
    return clean, tuple(spans)


def _span(m: re.Match[str]) -> tuple[int, int]:
    return m.span(1) if m.re.groups else m.span()


def replace(text: str, spans: Spans, wrap: Any) -> str:
    """`text` with each span's text put through `wrap`."""
    if not spans:
        return text
    out: list[str] = []
    at = 0
    for start, end in spans:
        out.append(text[at:start])
        out.append(wrap(text[start:end]))
        at = end
    out.append(text[at:])
    return "".join(out)
