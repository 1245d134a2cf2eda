"""A submission read against its form: each field's value as typed (to show the form again),
the lead profile it gives, and the error beside each field that is wrong. Nothing here knows
HTTP or leads."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from leadflow.forms.model import CONSENT_FIELD, Field, Form

# one @, something before it, a dot in the domain after it, no spaces: what a person mistypes
# (a missing @ or domain) is caught, and nothing a real address holds is refused
EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
NUMBER = re.compile(r"^[-+]?(\d+|\d{1,3}(,\d{3})+)(\.\d+)?$")  # 250, 1,000, 2.5
# a checkbox is sent with its value (`on` unless the page says another) when ticked, not at all
# when not; a page of the customer's own may send an explicit no
UNCHECKED = frozenset({"", "off", "no", "false", "0"})


@dataclass
class Submission:
    typed: dict[str, str | bool] = field(default_factory=dict)  # as the person typed it
    profile: dict[str, Any] = field(default_factory=dict)  # what the lead's profile takes
    errors: dict[str, str] = field(default_factory=dict)  # field name: what is wrong with it
    consented: bool = False


def read(form: Form, posted: Mapping[str, str]) -> Submission:
    """`posted`: the form's values by name (the last of a repeated name, as a browser sends one)."""
    out = Submission()
    for f in form.fields:
        raw = posted.get(f.name)
        if f.type == "checkbox":
            ticked = raw is not None and raw.strip().lower() not in UNCHECKED
            out.typed[f.name] = ticked
            if f.required and not ticked:
                out.errors[f.name] = ("Tick the box to agree: we need your consent to sign you up"
                                      if f.name == CONSENT_FIELD else "Tick this box to go on")
            elif f.name == CONSENT_FIELD:
                out.consented = ticked
            else:
                out.profile[f.profile] = ticked
            continue
        text = (raw or "").strip()
        out.typed[f.name] = raw or ""
        if not text:
            if f.required:
                out.errors[f.name] = "Please fill this in" if f.type != "select" else "Please choose one"
            continue
        if len(text) > f.max_length:
            out.errors[f.name] = f"At most {f.max_length:,} characters, please (this is {len(text):,})"
            continue
        value, problem = _READERS[f.type](f, text)
        if problem:
            out.errors[f.name] = problem
        else:
            out.profile[f.profile] = value
    return out


def _email(f: Field, text: str) -> tuple[Any, str]:
    if not EMAIL.match(text):
        return None, "This does not look like an e-mail address (name@company.com)"
    return text, ""


def _text(f: Field, text: str) -> tuple[Any, str]:
    return text, ""


def _number(f: Field, text: str) -> tuple[Any, str]:
    if not NUMBER.match(text):
        return None, "Please give a number (for example 250)"
    number = float(text.replace(",", ""))
    if f.min is not None and number < f.min:
        return None, f"At least {f.min:g}, please"
    if f.max is not None and number > f.max:
        return None, f"At most {f.max:g}, please"
    return (int(number) if number.is_integer() else number), ""


def _select(f: Field, text: str) -> tuple[Any, str]:
    if text not in {o.value for o in f.options}:
        return None, "Please choose one of the options"
    return text, ""


_READERS: dict[str, Callable[[Field, str], tuple[Any, str]]] = {
    "email": _email, "text": _text, "textarea": _text, "number": _number, "select": _select}
