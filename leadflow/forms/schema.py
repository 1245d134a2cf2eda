"""The shape of a form file as JSON Schema (the semantic checks that need more than a shape are
in leadflow.forms.validate). Kept as Python, not a .json file, so it installs with the package
without a package-data entry of its own."""

from __future__ import annotations

from typing import Any

NAME = r"^[a-z][a-z0-9_]{0,63}$"  # a field's name: a form parameter and a profile field
FIELD_TYPES = ("email", "text", "textarea", "number", "select", "checkbox")
MAX_FIELDS = 20  # with MAX_LENGTH each, a submit stays well inside an event's 32 KiB
MAX_LENGTH = 1_000  # a profile value's cap (rules.models.MAX_PROFILE_VALUE)
MAX_CONSENT_TEXT = 2_000
MAX_FILL_SECONDS = 3.0  # a real person on a short form (autofill, one checkbox) can be that fast

_TEXT = {"type": "string", "maxLength": 200}
_OPTION = {"oneOf": [
    {"type": ["string", "number"]},
    {"type": "object", "additionalProperties": False, "required": ["value"],
     "properties": {"value": {"type": ["string", "number"]}, "label": _TEXT}},
]}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["fields"],
    "properties": {
        "title": _TEXT,
        "intro": {"type": "string", "maxLength": 2_000},
        "submit": {"type": "string", "minLength": 1, "maxLength": 100},
        "fields": {"type": "array", "minItems": 1, "maxItems": MAX_FIELDS,
                   "items": {"$ref": "#/$defs/field"}},
        "consent": {
            "type": "object", "additionalProperties": False, "required": ["text", "version"],
            "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_CONSENT_TEXT},
                           "version": {"type": ["string", "number"]}},
        },
        "double_opt_in": {"type": "boolean"},
        "confirmation": {
            "type": "object", "additionalProperties": False, "required": ["text"],
            "properties": {"subject": _TEXT, "text": {"type": "string", "minLength": 1, "maxLength": 5_000}},
        },
        "thanks": {
            "type": "object", "additionalProperties": False,
            "properties": {"message": {"type": "string", "minLength": 1, "maxLength": 2_000},
                           "redirect": {"type": "string", "minLength": 1, "maxLength": 2_000}},
        },
        "min_fill_seconds": {"type": "number", "minimum": 0, "maximum": MAX_FILL_SECONDS},
        "honeypot": {"type": "string", "pattern": NAME},
    },
    "$defs": {
        "field": {
            "type": "object", "additionalProperties": False, "required": ["name", "type"],
            "properties": {
                "name": {"type": "string", "pattern": NAME},
                "type": {"enum": list(FIELD_TYPES)},
                "label": _TEXT,
                "help": {"type": "string", "maxLength": 500},
                "placeholder": _TEXT,
                "required": {"type": "boolean"},
                "max_length": {"type": "integer", "minimum": 1, "maximum": MAX_LENGTH},
                "profile": {"type": "string", "pattern": NAME},
                "options": {"type": "array", "items": _OPTION},
                "min": {"type": "number"},
                "max": {"type": "number"},
            },
        },
    },
}
