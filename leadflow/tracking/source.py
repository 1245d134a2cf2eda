"""Where a visitor came from: the first touch's UTM source, medium and campaign, else the
referring site's domain, else direct. Sources are compared as one (`google`, ` Google `)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def utm_of(url: str) -> dict[str, str]:
    """The UTM parameters of a page's address, trimmed, each at most 200 characters."""
    query = parse_qs(urlsplit(url).query, keep_blank_values=False)
    return {k: query[k][0].strip()[:200] for k in UTM if query.get(k) and query[k][0].strip()}


def folded(value: str) -> str:
    return " ".join(value.split()).casefold()


def domain_of(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def first_touch(view: dict[str, Any], own: frozenset[str] = frozenset()) -> dict[str, str]:
    """The lead's source fields from its first page view: `source` (and `source_medium`,
    `source_campaign` when the UTM parameters say them). A referrer on one of the site's own
    domains (`own`) is no source: the visit came from within."""
    utm = view.get("utm") or {}
    if utm.get("utm_source"):
        out = {"source": folded(utm["utm_source"])}
        if utm.get("utm_medium"):
            out["source_medium"] = folded(utm["utm_medium"])
        if utm.get("utm_campaign"):
            out["source_campaign"] = folded(utm["utm_campaign"])
        return out
    referrer = domain_of(str(view.get("referrer") or ""))
    if referrer and referrer not in own:
        return {"source": referrer}
    return {"source": "direct"}
