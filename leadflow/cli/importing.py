"""`leadflow import FILE --map MAP.yaml`: a CRM's history in, as archived history
(leadflow.importing)."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    im = sub.add_parser("import", help="a CRM export (CSV, or JSON Lines of events) into the event archive, "
                                       "as history that reports, simulate, diff and suggest read")
    im.add_argument("file", help="the export: CSV (its delimiter detected) or JSON Lines")
    im.add_argument("--map", required=True, dest="map_file", help="the YAML map of the export's columns")
    im.add_argument("--at", help="created_at for rows whose map gives no column (ISO time)")
    im.add_argument("--dry-run", action="store_true", help="read and check every row; write nothing")
    im.add_argument("--live", action="store_true", help="start live leads from the rows, not only history")
    im.add_argument("--json", action="store_true", help="the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    from leadflow.importing.command import run_import

    return run_import(args)
