"""What a submit tells the lead: its event (a `signup`, or a `form_submit` for a lead that exists)
with the consent recorded in `data.consent`, and the consent in the lead's profile as fields
rules and pages read.

The profile keeps the consent flat: `consent` (a boolean, as the shipped policy declares it and
as `nurture.requires_consent` reads it: true while the consent holds, which with double opt-in
is once the link is followed), `consent_version`, `consent_at`, `consent_form`, `consent_page`
and, with double opt-in, `consent_confirmed_at`. An object under `consent` would fail a policy
that asks for consent (it is not `true`) and no rule could read into it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from leadflow.forms.model import CONSENT_FIELD, Form
from leadflow.forms.submit import Submission
from leadflow.tracking.stitch import VISITOR  # the tracking script's first-party id, as stitching reads it

MAX_PAGE = 1_000  # a profile value's cap


def page_of(given: str) -> str:
    """The page a consent was given on (lf_page, else the Referer): an http(s) URL, or ""."""
    given = given.strip()
    parts = urlsplit(given)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return given[:MAX_PAGE]


def visitor_of(given: str) -> str:
    return given.strip() if VISITOR.match(given.strip()) else ""


def consent_field(form: Form) -> str:
    """The profile field the consent checkbox fills (`consent` unless the file says another)."""
    box = form.by_name.get(CONSENT_FIELD)
    return box.profile if box else CONSENT_FIELD


def submit_event(form: Form, sub: Submission, *, kind: str, at: str, page: str, visitor: str
                 ) -> dict[str, Any]:
    """The event of a good submit (`kind`: signup or form_submit)."""
    lead: dict[str, Any] = dict(sub.profile)
    data: dict[str, Any] = {"form": form.name}
    if form.consent is not None and sub.consented:
        data["consent"] = {"form": form.name, "version": form.consent.version, "text": form.consent.text,
                           "at": at, "page": page, "double_opt_in": form.double_opt_in, "confirmed": False}
        lead.update({consent_field(form): not form.double_opt_in, "consent_version": form.consent.version,
                     "consent_at": at, "consent_form": form.name})
        if page:
            lead["consent_page"] = page
    if visitor:
        data["visitor_id"] = visitor
    return {"type": kind, "at": at, "lead": lead, "data": data}


def confirmed_event(form: Form, *, event_id: str, version: str, at: str) -> dict[str, Any]:
    """The `form_submit` a followed confirmation link sends its lead (by its key, as the links in
    e-mail do: the link carries no address). Its id is the link's own, so a link followed twice
    is one event."""
    return {"id": event_id, "type": "form_submit", "at": at,
            "lead": {consent_field(form): True, "consent_confirmed_at": at},
            "data": {"form": form.name, "confirmed": True,
                     "consent": {"form": form.name, "version": version, "double_opt_in": True,
                                 "confirmed": True, "confirmed_at": at}}}
