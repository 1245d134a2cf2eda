"""Durations as ops write them in policy files: `30d`, `48h`, `15m`, `90s`, `2w`."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")  # the number and the unit


def parse_duration(text: str) -> float:
    """Seconds in a duration like `14d`; raises ValueError with the accepted forms."""
    match = DURATION.match(str(text))
    if not match:
        raise ValueError(
            f"bad duration {text!r}: write a number and a unit, e.g. 30d, 48h, 15m, 90s, 2w"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]
