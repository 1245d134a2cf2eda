"""`leadflow form validate FILES...`: each problem as `file:line: message` on stderr and exit 1,
else a line `file: ok (form /f/{name})` per file and exit 0, as `leadflow policy validate` does."""

from __future__ import annotations

import argparse
import sys

from leadflow.forms.validate import FormInvalid, load_form_file


def run_form(args: argparse.Namespace) -> int:
    if args.action != "validate":
        raise ValueError(f"form {args.action}: no such action")
    failed = False
    for file in args.files:
        try:
            form = load_form_file(file)
        except FormInvalid as err:
            for problem in err.problems:
                print(problem, file=sys.stderr)
            failed = True
            continue
        print(f"{file}: ok (form /f/{form.name})")
    return 1 if failed else 0
