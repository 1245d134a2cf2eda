"""A CRM export's records, each with the line it starts on: CSV as CRMs and spreadsheets write it,
or JSON Lines.

CSV: UTF-8 with or without a BOM (another encoding when the map says `encoding:`); `,`, `;`, tab
or `|` between fields, detected, or the map's `delimiter:`; fields quoted with `"` may hold the
delimiter, quotes (`""`) and line breaks; the first non-blank record is the header. A record whose
field count is not the header's is refused at its line. A quote left open runs on until the next
quote, which then closes inside a field: that record is refused at the line it began on and reading
starts again on the next line, so one stray quote costs one row, not the rest of the file."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DELIMITERS = (",", ";", "\t", "|")
SAMPLE_RECORDS = 50  # records read with each candidate delimiter to detect the file's
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


class ExportError(ValueError):
    """The export cannot be read at all (not the map's encoding, no header)."""


@dataclass(frozen=True)
class Record:
    line: int  # where the record starts, 1-based
    cells: list[str] | None  # None: refused (`problem` says why)
    problem: str = ""


def kind_of(path: Path, raw: bytes) -> Literal["csv", "jsonl"]:
    """JSON Lines by the file's suffix, else when its first non-blank character opens an object."""
    if path.suffix.lower() in JSON_SUFFIXES:
        return "jsonl"
    return "jsonl" if raw.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{" else "csv"


def text_of(path: Path, raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ExportError(f"{path}:{line}: not {encoding} (byte 0x{raw[err.start]:02x}); say the export's "
                          "`encoding:` in the map (cp1252, latin-1, utf-16)") from None


class CsvExport:
    """The header, the delimiter and the records after the header."""

    def __init__(self, text: str, delimiter: str | None = None, name: str = "the export") -> None:
        self.lines = io.StringIO(text, newline="").readlines()  # \n, \r\n and \r alike, kept
        self.delimiter = delimiter or detect(self.lines)
        self._start = next((i for i, line in enumerate(self.lines) if line.strip()), len(self.lines))
        if self._start == len(self.lines):
            raise ExportError(f"{name}: empty, no header")
        header, used = self._record(self._start)
        self.header = header or []
        self._start += used
        self.width = len(self.header)

    def _record(self, start: int) -> tuple[list[str] | None, int]:
        """The record that starts at line index `start`, and how many lines it took."""
        used = 0

        def feed() -> Iterator[str]:
            nonlocal used
            for i in range(start, len(self.lines)):
                used += 1
                yield self.lines[i]

        try:
            return next(csv.reader(feed(), delimiter=self.delimiter, strict=True)), used
        except (csv.Error, StopIteration):
            return None, max(used, 1)

    def records(self) -> Iterator[Record]:
        i = self._start
        while i < len(self.lines):
            if not self.lines[i].strip():
                i += 1
                continue
            cells, used = self._record(i)
            if cells is None:  # a quote left open, or one closed where no field ends
                runs = f"; read from here to line {i + used}, no record" if used > 1 else ""
                yield Record(i + 1, None, "a quote out of place (a quoted field opens and closes with its "
                                          f"quote, a quote inside it doubled){runs}")
                i += 1
                continue
            if len(cells) > self.width and not "".join(cells[self.width:]).strip():
                cells = cells[: self.width]  # trailing delimiters, nothing after them
            if len(cells) == self.width:
                yield Record(i + 1, cells)
            else:
                yield Record(i + 1, None, f"{len(cells)} fields where the header has {self.width}")
            i += used

    @property
    def last_line(self) -> int:
        return len(self.lines)


def detect(lines: list[str]) -> str:
    """The delimiter that splits the first records into the same number of fields as the header,
    more than one; among those that do equally well, the one giving the most fields."""
    sample = "".join(lines[: SAMPLE_RECORDS * 4])

    def score(delimiter: str) -> tuple[float, int]:
        records = [r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter) if r]
        records = records[:SAMPLE_RECORDS]
        if not records or len(records[0]) < 2:
            return (0.0, 0)
        width = len(records[0])
        body = records[1:] or records
        return (sum(len(r) == width for r in body) / len(body), width)

    scores = {d: score(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: scores[d])
    if scores[best][1] >= 2:
        return best
    counts = Counter(ch for ch in lines[0] if ch in DELIMITERS) if lines else Counter()
    return counts.most_common(1)[0][0] if counts else ","


def json_lines(text: str) -> Iterator[tuple[int, str]]:
    """A JSON Lines export's lines that are not blank, with their numbers."""
    for n, line in enumerate(io.StringIO(text, newline=None), 1):
        if line.strip():
            yield n, line
