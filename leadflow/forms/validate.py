"""Refuse a bad form file with `file:line: message` lines, as policies are refused: the JSON
Schema for its shape, then what a shape cannot say (names that must be unique, a select's
options, the consent checkbox, a redirect that is a URL)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from leadflow.forms.model import CONSENT_FIELD, DEFAULT_HONEYPOT, Form, build, profile_of
from leadflow.forms.schema import SCHEMA
from rules.yaml_lines import LoadedYaml, YamlError, load_yaml

FORM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # a file's stem: the form's URL /f/{name}
RESERVED_PREFIX = "lf_"  # the tracking script's hidden fields (lf_visitor, lf_page, lf_started)
# profile fields a submit writes itself (leadflow.forms.submit); no field may fill them
RESERVED_PROFILE = frozenset({"external_id", "consent_version", "consent_at", "consent_form", "consent_page",
                              "consent_confirmed_at"})
_VALIDATOR = Draft202012Validator(SCHEMA)


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class FormInvalid(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def form_name(path: Path) -> str:
    return path.name.removesuffix(".yaml").removesuffix(".yml")


def load_form_file(path: str | Path) -> Form:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FormInvalid([Problem(str(path), 1, err.strerror or str(err))]) from None
    return load_form_bytes(raw, str(path), form_name(path))


def load_form_bytes(raw: bytes, file: str, name: str) -> Form:
    """The form, or FormInvalid with every problem at its line."""
    if not FORM_NAME.match(name):
        raise FormInvalid([Problem(file, 1, f"the file's name {name!r} is the form's URL (/f/{name}): use "
                                            "lower-case letters, digits, - and _")])
    try:
        doc = load_yaml(raw)
    except YamlError as err:
        raise FormInvalid([Problem(file, err.line, err.message)]) from None
    if not isinstance(doc.data, dict):
        raise FormInvalid([Problem(file, 1, "a form file is a YAML mapping (fields:, consent:, thanks:)")])
    problems = sorted(_shape(doc, file)) or sorted(set(_Checks(doc, file).problems()))
    if problems:
        raise FormInvalid(problems)
    return build(name, doc.data)


def _shape(doc: LoadedYaml, file: str) -> Iterator[Problem]:
    for error in _VALIDATOR.iter_errors(doc.data):
        specific = best_match(error.context) if error.context else error
        yield Problem(file, doc.line_of(tuple(specific.absolute_path)), _message(doc.data, specific))


def _where(data: Any, path: tuple[Any, ...]) -> str:
    """A path as a marketer reads it: `fields[3] (role).type`."""
    out = ""
    node = data
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
            node = node[step] if isinstance(node, list) and step < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"
        else:
            out += f".{step}" if out else str(step)
            node = node.get(step) if isinstance(node, dict) else None
    return out


def _message(data: Any, error: ValidationError) -> str:
    where = _where(data, tuple(error.absolute_path))
    if error.validator == "additionalProperties":
        text = error.message.replace("Additional properties are not allowed", "unknown key(s)")
    elif error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        text = f"{missing} is required"
    elif error.validator == "enum" and tuple(error.absolute_path)[-1:] == ("type",):
        known = ", ".join(str(t) for t in SCHEMA["$defs"]["field"]["properties"]["type"]["enum"])
        text = f"unknown type {error.instance!r}; a field is one of {known}"
    elif error.validator == "pattern":
        text = f"{error.instance!r} is not a name: lower-case letters, digits and _, starting with a letter"
    else:
        text = error.message
    return f"{where}: {text}" if where else text


class _Checks:
    def __init__(self, doc: LoadedYaml, file: str) -> None:
        self.doc, self.file, self.data = doc, file, doc.data
        self.out: list[Problem] = []

    def add(self, path: tuple[Any, ...], message: str) -> None:
        where = _where(self.data, path)
        said = f"{where}: {message}" if where else message
        self.out.append(Problem(self.file, self.doc.line_of(path), said))

    def problems(self) -> list[Problem]:
        self._fields()
        self._identity()
        self._consent()
        self._thanks()
        return self.out

    def _fields(self) -> None:
        names: dict[str, int] = {}
        profiles: dict[str, int] = {}
        honeypot = self.data.get("honeypot", DEFAULT_HONEYPOT)
        for i, f in enumerate(self.data["fields"]):
            here = ("fields", i)
            name = f["name"]
            if name in names:
                self.add((*here, "name"), f"the field {name!r} is listed twice (first at line "
                                          f"{self.doc.line_of(('fields', names[name]))})")
                continue
            names[name] = i
            if name.startswith(RESERVED_PREFIX):
                self.add((*here, "name"), f"names starting {RESERVED_PREFIX} are the tracking script's")
            if name == honeypot:
                self.add((*here, "name"), f"{name!r} is the honeypot's name; a person never fills it")
            profile = profile_of(f)
            if profile in RESERVED_PROFILE:
                self.add(here, f"the profile field {profile!r} is leadflow's own (it records the consent)")
            elif profile in profiles and profile != "email":  # the e-mail's own check says that one
                self.add(here, f"the profile field {profile!r} is filled by another field too")
            profiles.setdefault(profile, i)
            self._kind(here, f)

    def _kind(self, here: tuple[Any, ...], f: dict[str, Any]) -> None:
        kind = f["type"]
        if kind == "select":
            values = [str(o["value"] if isinstance(o, dict) else o) for o in f.get("options", [])]
            if not values:
                self.add(here, "a select needs options (the values a person may pick)")
            for value in {v for v in values if values.count(v) > 1}:
                self.add((*here, "options"), f"the option {value!r} is listed twice")
        elif "options" in f:
            self.add((*here, "options"), f"only a select has options; this field is a {kind}")
        if kind != "number" and ("min" in f or "max" in f):
            self.add(here, f"min and max are for a number; this field is a {kind}")
        if "min" in f and "max" in f and f["min"] > f["max"]:
            self.add((*here, "max"), f"max {f['max']} is below min {f['min']}")
        if kind in ("checkbox", "select", "number") and "max_length" in f:
            self.add((*here, "max_length"), f"a {kind} takes no max_length")
        if (kind == "email") != (profile_of(f) == "email"):
            self.add(here, "the e-mail field, and it alone, fills the profile field email (the lead's name)")

    def _identity(self) -> None:
        emails = [(i, f) for i, f in enumerate(self.data["fields"]) if f["type"] == "email"]
        if not emails:
            self.add(("fields",), "a form needs a field of type email: the lead is named by its address")
        for i, f in emails:
            if not f.get("required", False):
                self.add(("fields", i), "the e-mail field must be required: without it no lead is named")
        for i, _ in emails[1:]:
            self.add(("fields", i), "one e-mail field per form: the lead is named by one address")

    def _consent(self) -> None:
        boxes = [(i, f) for i, f in enumerate(self.data["fields"]) if f["name"] == CONSENT_FIELD]
        consent = self.data.get("consent")
        if consent is None:
            for i, _ in boxes:
                self.add(("fields", i), "a consent checkbox records a consent: give its text and version "
                                        "(consent: {text: ..., version: ...})")
            if self.data.get("double_opt_in"):
                self.add(("double_opt_in",), "double opt-in confirms a consent: give consent: {text, version}"
                         )
            return
        if not boxes:
            self.add(("consent",), f"a form with consent has the checkbox field {CONSENT_FIELD!r} "
                                   f"(- {{name: {CONSENT_FIELD}, type: checkbox}})")
        for i, f in boxes:
            if f["type"] != "checkbox":
                self.add(("fields", i, "type"), f"the consent field is a checkbox, not a {f['type']}")
            if f.get("required") is False:
                self.add(("fields", i, "required"), "the consent checkbox is required when consent is set")
            if "label" in f:
                self.add(("fields", i, "label"), "the consent checkbox's label is consent.text")
        if not str(consent["version"]).strip():
            self.add(("consent", "version"), "the version is empty: say which text was agreed to")
        text = (self.data.get("confirmation") or {}).get("text")
        if text is not None and "{link}" not in text:
            self.add(("confirmation", "text"), "the text must hold {link}: the confirmation link goes there")

    def _thanks(self) -> None:
        thanks = self.data.get("thanks")
        if thanks is None:
            return
        if ("message" in thanks) == ("redirect" in thanks):
            self.add(("thanks",), "say either message: (a thank-you page) or redirect: (a URL), one of them")
        if "redirect" in thanks:
            url = urlsplit(thanks["redirect"])
            if url.scheme not in ("http", "https") or not url.netloc:
                self.add(("thanks", "redirect"), f"{thanks['redirect']!r} is not a URL (https://...)")
