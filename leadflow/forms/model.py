"""A form as leadflow serves it: its fields, its consent, double opt-in, and what a visitor sees
after a submit. Built from a file that leadflow.forms.validate has checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from leadflow.forms.schema import MAX_FILL_SECONDS

FieldType = Literal["email", "text", "textarea", "number", "select", "checkbox"]
CONSENT_FIELD = "consent"  # the checkbox a form with `consent:` carries
DEFAULT_HONEYPOT = "homepage"  # a name browsers' autofill leaves alone and bots fill
# the longest text each type takes when the file says no max_length
DEFAULT_LENGTH: dict[str, int] = {"email": 320, "text": 200, "textarea": 1_000, "number": 40, "select": 200,
                                  "checkbox": 10}
DEFAULT_CONFIRMATION = ("Please confirm your e-mail address by following this link:\n\n{link}\n\n"
                        "If you did not ask for this, ignore this message: nothing more will reach you.")


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    label: str
    required: bool = False
    max_length: int = 200
    profile: str = ""  # the lead profile field it fills
    options: tuple[Option, ...] = ()
    min: float | None = None
    max: float | None = None
    help: str = ""
    placeholder: str = ""

    @property
    def autocomplete(self) -> str:
        """What a browser's autofill may put here (the profile field says what it is)."""
        return {"email": "email", "name": "name", "first_name": "given-name", "last_name": "family-name",
                "company": "organization", "role": "organization-title", "country": "country-name"
                }.get(self.profile, "off" if self.type == "checkbox" else "on")


@dataclass(frozen=True)
class Consent:
    text: str
    version: str


@dataclass(frozen=True)
class Form:
    name: str
    title: str
    fields: tuple[Field, ...]
    intro: str = ""
    submit: str = "Send"
    consent: Consent | None = None
    double_opt_in: bool = False
    confirmation_subject: str = ""
    confirmation_text: str = DEFAULT_CONFIRMATION
    thanks_message: str = "Thank you."
    redirect: str = ""  # after a submit, instead of the thank-you message
    min_fill_seconds: float = MAX_FILL_SECONDS
    honeypot: str = DEFAULT_HONEYPOT
    by_name: dict[str, Field] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({f.name: f for f in self.fields})


def profile_of(raw: dict[str, Any]) -> str:
    """The profile field a field fills: its `profile:`, else its name; the e-mail field's is
    `email` whatever its name (`work_email`): the address names the lead."""
    return str(raw.get("profile") or ("email" if raw["type"] == "email" else raw["name"]))


def _option(raw: Any) -> Option:
    if isinstance(raw, dict):
        value = str(raw["value"])
        return Option(value, str(raw.get("label") or value))
    return Option(str(raw), str(raw))


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def build(name: str, data: dict[str, Any]) -> Form:
    """The form a checked file describes (`name`: the file's stem, its URL /f/{name})."""
    fields = []
    for raw in data["fields"]:
        kind = raw["type"]
        fields.append(Field(
            name=raw["name"], type=kind, label=str(raw.get("label") or _label(raw["name"])),
            # the consent checkbox is required: a submit without it records no consent
            required=bool(raw.get("required", False)) or (raw["name"] == CONSENT_FIELD and "consent" in data),
            max_length=int(raw.get("max_length") or DEFAULT_LENGTH[kind]),
            profile=profile_of(raw),
            options=tuple(_option(o) for o in raw.get("options", ())),
            min=raw.get("min"), max=raw.get("max"), help=str(raw.get("help", "")),
            placeholder=str(raw.get("placeholder", ""))))
    consent = data.get("consent")
    thanks = data.get("thanks") or {}
    confirmation = data.get("confirmation") or {}
    title = str(data.get("title") or _label(name))
    return Form(
        name=name, title=title, fields=tuple(fields), intro=str(data.get("intro", "")),
        submit=str(data.get("submit") or "Send"),
        consent=Consent(str(consent["text"]), str(consent["version"])) if consent else None,
        double_opt_in=bool(data.get("double_opt_in", False)),
        confirmation_subject=str(confirmation.get("subject") or f"Please confirm: {title}"),
        confirmation_text=str(confirmation.get("text") or DEFAULT_CONFIRMATION),
        thanks_message=str(thanks.get("message") or "Thank you."), redirect=str(thanks.get("redirect", "")),
        min_fill_seconds=float(data.get("min_fill_seconds", MAX_FILL_SECONDS)),
        honeypot=str(data.get("honeypot") or DEFAULT_HONEYPOT))
