"""Every bench's `--quick`: a short run for the inner loop (a minute or two here, a figure worth
reading), where the default run is the one the targets are measured by. Options given on the
command line still count over `--quick`'s."""

from __future__ import annotations

import argparse
from typing import Any


def parse(ap: argparse.ArgumentParser, quick: dict[str, Any]) -> argparse.Namespace:
    said = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in quick.items())
    ap.add_argument("--quick", action="store_true", help=f"the inner loop's short run: {said}")
    known, _ = ap.parse_known_args()
    if known.quick:
        ap.set_defaults(**quick)
    return ap.parse_args()
