"""`leadflow import FILE --map MAP.yaml [--at TIME] [--dry-run] [--live] [--json]` (docs/import.md).

Exit 0 when rows were imported (refused rows listed beside them) or there was nothing wrong;
1 when the map or the file cannot be read, or every row was refused."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from leadflow.db.database import Database
from leadflow.importing.archiving import ArchiveWriter
from leadflow.importing.jsonl import read_events
from leadflow.importing.mapping import ImportMap, MapInvalid, Terms, load_map
from leadflow.importing.reading import CsvExport, ExportError, json_lines, kind_of, text_of
from leadflow.importing.rows import Lead, Refused, RowReader
from leadflow.settings import Settings

CHUNK_ROWS = 2000  # rows a transaction: a few thousand keeps each write short and the total fast
PROGRESS_LINES = 10_000  # a file this long shows its progress even when stderr is no terminal


@dataclass
class Summary:
    file: str
    format: str
    dry_run: bool
    delimiter: str | None = None
    rows: int = 0
    imported: int = 0  # rows (or lines) whose events were all accepted
    leads: int = 0
    events: int = 0
    new: int = 0
    already: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    ignored: dict[str, dict[str, int]] = field(default_factory=dict)
    live: dict[str, Any] | None = None

    def add(self, leads: list[Lead], writer: ArchiveWriter) -> None:
        written = writer.write([(lead.key, lead.events) for lead in leads])
        self.new += written.new
        self.already += written.already
        self.leads += len(leads)
        self.events += sum(len(lead.events) for lead in leads)
        self.sources.update(lead.source or "unknown" for lead in leads)
        self.outcomes.update(lead.outcome for lead in leads if lead.outcome)

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "format": self.format, "delimiter": self.delimiter,
                "dry_run": self.dry_run,
                "rows": self.rows, "imported_rows": self.imported, "leads": self.leads, "events": self.events,
                "new": self.new, "already": self.already,
                "refused": sorted(self.refused, key=lambda r: r["line"]),
                "sources": dict(self.sources.most_common()), "outcomes": dict(self.outcomes),
                "ignored": self.ignored, "live": self.live}


def run_import(args: argparse.Namespace) -> int:
    from activities.policies import PolicyStore
    from leadflow.cli.main import _when

    settings = Settings.from_env()
    path = Path(args.file)
    at: datetime | None = _when(args.at, "--at")
    try:
        raw = path.read_bytes()
    except OSError as err:
        print(f"leadflow: {path}: {err.strerror or err}", file=sys.stderr)
        return 1
    kind = kind_of(path, raw)
    store = PolicyStore(settings.policy_dir, settings.policy, settings.content_dir)
    store.reload()
    terms = _terms(store)
    if not store.versions():  # said, not silent: what the map names reaches the archive unchecked
        print(f"leadflow: warning: no {settings.policy} policy in {settings.policy_dir.resolve()} "
              "(LEADFLOW_POLICY_DIR): the map's profile fields and event types are not checked against "
              "a policy", file=sys.stderr)
    try:
        spec = load_map(args.map_file, terms, columns=kind == "csv")
        summary = Summary(str(path), kind, args.dry_run)
        text = text_of(path, raw, spec.encoding)
        export = CsvExport(text, spec.delimiter, str(path)) if kind == "csv" else None
        if export is not None:
            spec.check_header(export.header, path.name)
            if spec.created_at.column is None and at is None:
                raise MapInvalid([f"{spec.file}:1: the map names no created_at column: give the rows' "
                                  "time with --at"])
        else:
            spec.check_events_only()
    except MapInvalid as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    except ExportError as err:
        print(f"leadflow: {err}", file=sys.stderr)
        return 1
    ledger = _ledger(settings, args.dry_run)
    sender = None
    try:
        if args.live and not args.dry_run:
            from leadflow.importing.live import LiveSender

            sender = LiveSender(settings, store)
        writer = ArchiveWriter(ledger, args.dry_run)
        if export is not None:
            summary.delimiter = export.delimiter
            for leads in _csv_leads(export, spec, at, summary, quiet=args.json):
                summary.add(leads, writer)
                if sender is not None:
                    sender.send(leads)
        else:
            read = read_events(json_lines(text), spec, terms.event_types, path.name)
            summary.rows, summary.imported = read.lines, read.lines - len(read.refused)
            summary.refused = [{"line": n, "reason": why} for n, why in read.refused]
            summary.add(read.leads, writer)
            if sender is not None:
                sender.send(read.leads)
        if sender is not None:
            summary.live = sender.summary()
    finally:
        if sender is not None:
            sender.close()
        if ledger is not None:
            ledger.close()
    print(json.dumps(summary.as_dict()) if args.json else table(summary))
    return 1 if summary.refused and not summary.imported else 0


def _terms(store: Any) -> Terms:
    """What the policy in force allows: the highest valid version of LEADFLOW_POLICY in the
    policy folder, as `leadflow send` checks events (no version there: anything)."""
    versions = store.versions()
    if not versions:
        return Terms()
    active = versions[-1]
    return Terms(active.policy.profile, active.event_types, f"policy {active.name} v{active.version}")


def _ledger(settings: Settings, dry_run: bool) -> Database | None:
    """The shared database; None for a dry run on a SQLite file not made yet (nothing there)."""
    url = settings.shared_db_url
    if dry_run and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    return Database.of(settings)


def _csv_leads(export: CsvExport, spec: ImportMap, at: datetime | None, summary: Summary,
               quiet: bool) -> Iterator[list[Lead]]:
    """The export's leads, CHUNK_ROWS rows at a time; refused rows into the summary."""
    reader = RowReader(spec, export.header, at)
    first: dict[str, int] = {}  # lead -> the line that named it first
    total = export.last_line
    shown = not quiet and (sys.stderr.isatty() or total >= PROGRESS_LINES)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not shown, transient=sys.stderr.isatty(),
                  console=_stderr()) as progress:
        bar = progress.add_task("importing, line", total=total)
        chunk: list[Lead] = []
        for record in export.records():
            summary.rows += 1
            progress.update(bar, completed=record.line)
            try:
                if record.cells is None:
                    raise Refused(record.problem)
                lead = reader.lead(record.cells)
                if lead.key in first:
                    raise Refused(f"the same lead as line {first[lead.key]} (one row a lead)")
            except Refused as err:
                summary.refused.append({"line": record.line, "reason": str(err)})
                continue
            first[lead.key] = record.line
            summary.imported += 1
            chunk.append(lead)
            if len(chunk) >= CHUNK_ROWS:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        progress.update(bar, completed=total)
    summary.ignored = _ignored(reader)


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _ignored(reader: RowReader) -> dict[str, dict[str, int]]:
    """Per event column, the values no event is mapped to, and how often."""
    out: dict[str, dict[str, int]] = {}
    for (column, value), n in reader.ignored.most_common():
        out.setdefault(column, {})[value] = n
    return out


def table(s: Summary) -> str:
    what = "would archive" if s.dry_run else "archived"
    how = f"CSV, {_delimiter(s.delimiter)}" if s.format == "csv" else "JSON Lines"
    out = [f"{s.file} ({how}): {s.rows} {'rows' if s.format == 'csv' else 'lines'}, {s.imported} read, "
           f"{len(s.refused)} refused",
           f"{s.leads} leads, {s.events} events: {what} {s.new} new, {s.already} already there"
           + (" (dry run: nothing written)" if s.dry_run else "")]
    if s.sources:
        out += ["", "source                    leads"]
        out += [f"  {name:<22} {n:>6}" for name, n in s.sources.most_common()]
    if s.outcomes:
        out += ["", "outcomes: " + ", ".join(f"{k} {n}" for k, n in sorted(s.outcomes.items()))]
    for column, values in s.ignored.items():
        shown = ", ".join(f"{v!r} {n}" for v, n in list(values.items())[:8])
        out += ["", f"no event mapped for {column!r}: {shown}{' ...' if len(values) > 8 else ''}"]
    if s.live is not None:
        out += ["", f"live: {s.live['accepted']} events accepted, {s.live['duplicate']} duplicate, "
                    f"{len(s.live['refused'])} refused"]
        out += [f"  {r['lead']} {r['event']}: {r['reason']}" for r in s.live["refused"][:20]]
    if s.refused:
        out += ["", "refused:"]
        out += [f"  line {r['line']}: {r['reason']}" for r in sorted(s.refused, key=lambda r: r["line"])]
    return "\n".join(out)


def _delimiter(d: str | None) -> str:
    return {"\t": "tab", ",": "','", ";": "';'", "|": "'|'"}.get(d or ",", repr(d)) + " between fields"
