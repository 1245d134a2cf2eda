"""`leadflow form validate`: marketing's forms (forms/*.yaml) checked like policies
(leadflow.forms)."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    fm = sub.add_parser("form", help="marketing's forms (forms/*.yaml)")
    fsub = fm.add_subparsers(dest="action", required=True)
    v = fsub.add_parser("validate", help="schema and semantic checks; file:line: message, exit 1 on "
                                         "any problem")
    v.add_argument("files", nargs="+")


def run(args: argparse.Namespace) -> int:
    from leadflow.forms.command import run_form

    return run_form(args)
