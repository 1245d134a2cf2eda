"""A CRM cell's text read as what the policy's profile field holds (a number, a yes/no, a list) or
as a time. Each reader raises ValueError saying what it accepts: the row is refused with that.

Numbers as CRMs and spreadsheets write them: `60000`, `60,000`, `60000.50`, `-3`, a currency sign
in front (`$60,000`, `€60000`, `£1,200.50`) and `k`/`m` behind (`60k`, `$1.5M`). A comma is a
thousands separator only in groups of three (`60,000`); `60.000` is sixty, and `60,5` is refused
rather than guessed (a decimal comma or a thousands separator?).

Times: ISO 8601 (`2024-03-05`, `2024-03-05 14:22:10`, `2024-03-05T14:22:10+02:00`, `...Z`),
`03/05/2024` month first as US exports write it (day first when the map says `day_first: true`),
with an optional `14:22`, `14:22:10` or `2:22 PM`, `2024/03/05`, and `05.03.2024` (day first,
as German exports write it). A time without an offset is in the map's `timezone` (default UTC)."""

from __future__ import annotations

import re
from datetime import datetime, timezone, tzinfo
from typing import Any

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_SCALE = {"k": 1_000, "m": 1_000_000}
_CURRENCY = "$€£¥"
_TRUE = frozenset({"true", "yes", "y", "1", "x", "on", "checked"})
_FALSE = frozenset({"false", "no", "n", "0", "off", "unchecked"})


def number(text: str) -> int | float:
    """`$60,000` -> 60000, `1.5k` -> 1500, `60000.50` -> 60000.5."""
    body = text.strip().replace(" ", "")
    sign = ""
    if body and body[0] in "+-":
        sign, body = body[0], body[1:]
    body = body.lstrip(_CURRENCY)
    scale = _SCALE.get(body[-1:].lower(), 1) if body else 1
    if scale != 1:
        body = body[:-1]
    if not _NUMBER.fullmatch(sign + body):
        raise ValueError(f"{text!r} is not a number (60000, 60,000, $60k, 1.5M)")
    value = float(sign + body.replace(",", "")) * scale
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def yes_no(text: str) -> bool:
    word = text.strip().casefold()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a yes or no (true/false, yes/no, y/n, 1/0)")


def items(text: str) -> list[str]:
    """A list cell: `a; b` or `a, b` (a semicolon wins when there is one)."""
    separator = ";" if ";" in text else ","
    return [part.strip() for part in text.split(separator) if part.strip()]


def as_kind(text: str, kind: str) -> Any:
    """The cell as the policy's profile kind (text, number, boolean, list)."""
    if kind == "number":
        return number(text)
    if kind == "boolean":
        return yes_no(text)
    if kind == "list":
        return items(text)
    return text.strip()


_DATE_ONLY = ("%Y/%m/%d", "%d.%m.%Y")
_CLOCKS = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p")


def _patterns(day_first: bool) -> tuple[str, ...]:
    slash = "%d/%m/%Y" if day_first else "%m/%d/%Y"
    short = "%d/%m/%y" if day_first else "%m/%d/%y"
    return tuple(day + clock for day in (slash, short, *_DATE_ONLY) for clock in _CLOCKS)


PATTERNS = {False: _patterns(False), True: _patterns(True)}


def moment(text: str, zone: tzinfo = timezone.utc, day_first: bool = False,
           fmt: str | None = None) -> datetime:
    """The cell as an aware time (see the module's docstring for what is read)."""
    body = " ".join(text.split())
    found: datetime | None = None
    if fmt is not None:
        try:
            found = datetime.strptime(body, fmt)
        except ValueError:
            raise ValueError(f"{text!r} is not a time of the map's format {fmt!r}") from None
    else:
        found = _iso(body)
        for pattern in PATTERNS[day_first] if found is None else ():
            try:
                found = datetime.strptime(body, pattern)
                break
            except ValueError:
                continue
    if found is None:
        order = "DD/MM/YYYY" if day_first else "MM/DD/YYYY"
        raise ValueError(f"{text!r} is not a date (2024-03-05, 2024-03-05 14:22:10, ISO with an offset, "
                         f"{order})")
    return found if found.tzinfo else found.replace(tzinfo=zone)


def _iso(body: str) -> datetime | None:
    if not body[:4].isdigit() or body[4:5] != "-":
        return None  # fromisoformat takes `20240305` and week dates too: only the dashed forms here
    try:
        return datetime.fromisoformat(body.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
