"""`leadflow content preview ID --lead FILE`: one template rendered for a person to read."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from leadflow.cli.errors import UserError
from leadflow.delivery.content import ContentInvalid, load_template, template_path


def content_dir(args: argparse.Namespace, settings_dir: Path) -> Path:
    from leadflow.settings import Settings

    return Path(args.content or Settings.from_env().content_dir_setting or settings_dir)


def preview(args: argparse.Namespace, folder: Path) -> int:
    path = template_path(folder, args.id)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise UserError(f"no template {args.id!r}: {path} does not exist (templates: {known})")
    try:
        template = load_template(path, args.id)
    except ContentInvalid as err:
        raise UserError("\n".join(str(p) for p in err.problems)) from None
    lead = _lead(args.lead)
    rendered = template.render(lead, "https://leads.example/u/PREVIEW-TOKEN")
    if args.json:
        print(json.dumps({"id": args.id, "subject": rendered.subject, "text": rendered.text,
                          "html": rendered.html}, indent=2))
        return 0
    print(f"Subject: {rendered.subject}\nTo: {lead.get('email', '(no e-mail in the lead file)')}\n")
    print("--- text ---")
    print(rendered.text.rstrip("\n"))
    print("\n--- html ---")
    print(rendered.html.rstrip("\n"))
    return 0


def _lead(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        lead = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: {err}") from None
    if not isinstance(lead, dict):
        raise UserError(f"{path}: a lead file holds one JSON object (the lead's profile)")
    return lead
