"""`leadflow import` on a generated CRM export of thousands of rows with the dirt real exports have
(blanks, picklist placeholders, sources in mixed case, quoted commas and line breaks, a BOM, `;`
between fields, dates in four formats, money as `$60,000` and `45k`) and broken rows (a wrong
field count, an unclosed quote, a bad e-mail, a bad date, a bad number, a repeated lead): the
refused lines and reasons exactly, the funnel by source against the generator's own truth, a second
import that changes nothing, a dry run that writes nothing, and `policy simulate` reading the
imported history from `leadflow events export`."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from leadflow.cli.main import main

ROWS = 3000
MAP = """\
id: crm id
email: E-Mail
created_at: Created Date
missing: ["", Select, N/A]
source:
  column: Lead Source
  values: {google: paid-search, google ads: paid-search, linkedin: social}
profile:
  company: Company
  role: {column: Job Title, values: {VP Sales: vp, Head of Sales: director}}
  budget: Budget
events:
  - {count: Pricing Views, type: page_view, data: {path: /pricing}}
  - column: Last Activity
    values: {Requested Demo: demo_request, Attended Webinar: webinar_attended}
outcome:
  column: Status
  won: [Closed Won]
  lost: [Closed Lost, Disqualified]
  reason: Loss Reason
"""
HEADER = ["CRM ID", " E-mail ", "Company", "JOB TITLE", "Budget", "Lead  Source", "Created Date",
          "Pricing Views", "Last Activity", "Status", "Loss Reason"]
SOURCES = {"Google": "paid-search", "google": "paid-search", " GOOGLE ADS ": "paid-search",
           "Referral": "referral", "referral": "referral", "LinkedIn": "social", "Webinar": "webinar",
           "": "unknown", "Select": "unknown", "N/A": "unknown"}
STATUSES = {"Closed Won": "won", "closed won": "won", "Closed Lost": "lost", "DISQUALIFIED": "lost",
            "Open": None, "": None, "Select": None}


@dataclass
class Export:
    path: Path
    truth: dict[str, Counter[str]]  # source -> leads, won, lost (of the rows that import)
    refused: list[tuple[int, str]]
    leads: int
    events: int
    line_of: dict[int, int]  # row i -> the line it starts on
    phone_calls: int  # rows that import with an activity the map maps to no event


def _cell(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ';"\n') else value


def _when(rng: random.Random, at: datetime) -> str:
    forms = (at.strftime("%Y-%m-%d"), at.strftime("%Y-%m-%d %H:%M:%S"),
             at.astimezone(timezone(timedelta(hours=2))).isoformat(), at.strftime("%m/%d/%Y"))
    return rng.choice(forms)


def generate(folder: Path, rows: int = ROWS, seed: int = 7) -> Export:
    rng = random.Random(seed)
    lines = ["\ufeff" + ";".join(HEADER)]
    line = 1  # the header's
    truth: dict[str, Counter[str]] = {}
    refused: list[tuple[int, str]] = []
    leads = events = phone_calls = 0
    line_of: dict[int, int] = {}
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    broken = {100: "fields", 700: "quote", 1200: "email", 1800: "date", 2300: "budget", 2600: "again"}
    for i in range(rows):
        at = start + timedelta(minutes=37 * i)
        email = rng.choice([f"p{i}@co{i % 97}.example", f"P{i}@Co{i % 97}.Example", "", "N/A"])
        source_text = rng.choice(list(SOURCES))
        status = rng.choice(list(STATUSES))
        views = rng.choice(["0", "1", "3", "", "Select"])
        activity = rng.choice(["Requested Demo", "attended webinar", "Phone Call", ""])
        company = rng.choice(["Acme, Inc.", 'The "Best" Co', "Line\nBreak Ltd", "Plain"])
        cells = [f"crm-{i}", email, company, rng.choice(["VP Sales", "head of sales", "Analyst", "Select"]),
                 rng.choice(["$60,000", "45k", "", "Select", "120000"]), source_text, _when(rng, at), views,
                 activity, status, "went elsewhere" if STATUSES[status] == "lost" else ""]
        kind = broken.get(i)
        if kind == "email":
            cells[1] = "bob.example.com"
        elif kind == "date":
            cells[6] = "2026-13-40"
        elif kind == "budget":
            cells[4] = "lots"
        elif kind == "again":
            cells[0] = "crm-5"
            cells[1] = rows_email if (rows_email := _first_email(lines)) else cells[1]
        text = ";".join(map(_cell, cells))
        if kind == "fields":
            text += ";extra"
        elif kind == "quote":
            text = text.replace(f"crm-{i};", f'crm-{i};"', 1)
        start_line = line_of[i] = line + 1
        line += 1 + text.count("\n")
        lines.append(text)
        if kind is not None:
            refused.append((start_line, kind))
            continue
        source = SOURCES[source_text]
        outcome = STATUSES[status]
        counts = truth.setdefault(source, Counter())
        counts["leads"] += 1
        counts[outcome or "open"] += 1
        leads += 1
        phone_calls += activity == "Phone Call"
        events += 1 + (int(views) if views.isdigit() else 0) + (activity.lower() in ("requested demo",
                                                                                       "attended webinar")) \
            + (outcome is not None)
    path = folder / "crm export.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return Export(path, truth, refused, leads, events, line_of, phone_calls)


def _first_email(lines: list[str]) -> str:
    """Row crm-5's e-mail, as written (the repeated lead names the same person)."""
    row = next(line for line in lines if line.startswith("crm-5;"))
    return row.split(";")[1]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEADFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LEADFLOW_DATABASE_URL", raising=False)
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # policies/ as the CLI finds it
    return tmp_path / "home"


def archived(home: Path) -> int:
    import sqlite3

    db = home / "leadflow.sqlite"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_a_dirty_crm_export_imports_once_and_the_funnel_by_source_counts_it(
        tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = generate(tmp_path)
    spec = tmp_path / "map.yaml"
    spec.write_text(MAP, encoding="utf-8")
    args = ("import", str(export.path), "--map", str(spec), "--json")

    code, out = run(capsys, *args, "--dry-run")
    dry = json.loads(out)
    assert code == 0 and archived(home) == 0
    assert dry["dry_run"] and dry["new"] == export.events and dry["delimiter"] == ";"

    code, out = run(capsys, *args)
    first = json.loads(out)
    assert code == 0
    (fields, quote, email, date, budget, again) = (line for line, _ in export.refused)
    assert first["refused"] == [
        {"line": fields, "reason": "12 fields where the header has 11"},
        {"line": quote, "reason": "a quote out of place (a quoted field opens and closes with its quote, "
                                  "a quote inside it doubled)"},
        {"line": email, "reason": "email (E-Mail): not an e-mail address: 'bob.example.com'"},
        {"line": date, "reason": "Created Date: '2026-13-40' is not a date (2024-03-05, 2024-03-05 14:22:10, "
                                 "ISO with an offset, MM/DD/YYYY)"},
        {"line": budget, "reason": "budget (Budget): 'lots' is not a number (60000, 60,000, $60k, 1.5M)"},
        {"line": again, "reason": f"the same lead as line {export.line_of[5]} (one row a lead)"}]
    assert (first["rows"], first["imported_rows"], first["leads"]) == (ROWS, export.leads, export.leads)
    assert (first["events"], first["new"], first["already"]) == (export.events, export.events, 0)
    assert archived(home) == export.events
    assert first["ignored"] == {"Last Activity": {"Phone Call": export.phone_calls}}
    assert first["sources"] == {source: c["leads"] for source, c in export.truth.items()}

    code, out = run(capsys, *args)
    again_ = json.loads(out)
    assert (again_["new"], again_["already"]) == (0, export.events) and archived(home) == export.events

    code, out = run(capsys, "report", "funnel", "--by", "source", "--json")
    groups = json.loads(out)["groups"]
    assert set(groups) == set(export.truth)
    for source, c in export.truth.items():
        g = groups[source]
        assert (g["leads"], g["won"], g["lost"]) == (c["leads"], c["won"], c["lost"]), source
        assert g["rate"] == round(c["won"] / c["leads"], 4)
        assert g["win_rate"] == round(c["won"] / (c["won"] + c["lost"]), 4)

    # the archive's export is history `policy simulate` replays, each lead's label kept
    log = tmp_path / "log.jsonl"
    code, out = run(capsys, "events", "export")
    log.write_text(out, encoding="utf-8")
    assert len(out.splitlines()) == export.events
    results = tmp_path / "results.jsonl"
    code, out = run(capsys, "policy", "simulate", "policies/lead-lifecycle.v1.yaml", "--events", str(log),
                    "--processes", "1", "--json", "--out", str(results))
    assert code == 0 and json.loads(out)["leads"] == export.leads
    said = Counter(json.loads(line)["outcome"] for line in results.read_text().splitlines())
    assert said["won"] == sum(c["won"] for c in export.truth.values())
    assert said["lost"] == sum(c["lost"] for c in export.truth.values())


def _events_of(lines: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_json_lines_events_import_with_their_lines_refused_and_people_joined(
        tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "crm.jsonl"
    log.write_text(_events_of([
        {"type": "signup", "at": "2026-03-02T09:00:00Z", "lead": {"email": "ana@acme.example"},
         "data": {"source": " Google "}},
        {"type": "page_view", "at": "2026-03-02T10:00:00Z", "lead": {"external_id": "crm-7"},
         "data": {"path": "/pricing"}},
        {"type": "signup", "at": "2026-03-04T09:00:00Z", "lead": {"email": "bo@acme.example",
                                                                   "external_id": "crm-7"}},
        {"type": "page_view", "lead": {"email": "ana@acme.example"}},
        {"type": "outcome", "at": "2026-03-09T09:00:00Z", "lead": {"email": "bo@acme.example"},
         "data": {"outcome": "won", "reason": "signed"}},
        {"type": "outcome", "at": "2026-03-09T09:00:00Z", "lead": {"email": "ana@acme.example"},
         "data": {"outcome": "maybe"}},
    ]) + "not json\n", encoding="utf-8")
    spec = tmp_path / "map.yaml"
    spec.write_text("source: {values: {google: paid-search}}\n", encoding="utf-8")
    code, out = run(capsys, "import", str(log), "--map", str(spec), "--json")
    summary = json.loads(out)
    assert code == 0
    assert summary["refused"] == [
        {"line": 4, "reason": "an event needs its time, `at` (an ISO time)"},
        {"line": 6, "reason": "data.outcome: an outcome is won or lost"},
        {"line": 7, "reason": "not JSON: Expecting value"}]
    assert (summary["leads"], summary["events"], summary["new"]) == (2, 4, 4)
    assert summary["sources"] == {"paid-search": 1, "unknown": 1}
    assert summary["outcomes"] == {"won": 1}
    # the same moments written in another time zone, and the lines newest first: nothing new
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()[:6]]
    for line in lines:
        if "at" in line:
            line["at"] = line["at"].replace("T09:00:00Z", "T10:00:00+01:00").replace("T10:00:00Z",
                                                                                   "T11:00:00+01:00")
    log.write_text(_events_of(lines[::-1]), encoding="utf-8")
    code, out = run(capsys, "import", str(log), "--map", str(spec), "--json")
    assert (code, json.loads(out)["new"], json.loads(out)["already"]) == (0, 0, 4)


@pytest.mark.parametrize(("text", "problem"), [
    ("email: Email\nsource: Lead Sorce\n", "map.yaml:2: no column 'Lead Sorce' in export.csv (its columns: "
                                          "'Email', 'Lead Source', 'Created')"),
    ("email: Email\ncreated_at: Created\nprofile:\n  shoe_size: Email\n",
     "map.yaml:4: 'shoe_size' is not in policy lead-lifecycle v1's profile"),
    ("email: Email\ncreated_at: Created\nevents:\n  - {count: Email, type: page_veiw}\n",
     "map.yaml:4: unknown event type 'page_veiw'"),
    ("email: Email\ncreated_at: Created\ncolour: red\n", "map.yaml:3: unknown key 'colour'"),
    ("email: Email\n", "map.yaml:1: the map names no created_at column: give the rows' time with --at"),
])
def test_a_map_problem_is_said_at_its_line_and_nothing_is_imported(
        tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str) -> None:
    csv = tmp_path / "export.csv"
    csv.write_text("Email,Lead Source,Created\nana@acme.example,google,2026-03-02\n", encoding="utf-8")
    (tmp_path / "map.yaml").write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert main(["import", str(csv), "--map", str(tmp_path / "map.yaml")]) == 1
    said = capsys.readouterr().err
    assert said.startswith(str(tmp_path / "map.yaml").removesuffix("map.yaml")) and problem in said, said
    assert archived(home) == 0


def test_a_lead_of_history_with_an_outcome_and_no_signup_counts_in_the_funnel(
        tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "crm.jsonl"
    log.write_text(_events_of([
        {"type": "page_view", "at": "2026-03-01T09:00:00Z", "lead": {"external_id": "crm-9"},
         "data": {"path": "/pricing"}},
        {"type": "outcome", "at": "2026-03-09T09:00:00Z", "lead": {"external_id": "crm-9"},
         "data": {"outcome": "won"}},
    ]), encoding="utf-8")
    spec = tmp_path / "map.yaml"
    spec.write_text("missing: ['']\n", encoding="utf-8")
    assert run(capsys, "import", str(log), "--map", str(spec), "--json")[0] == 0
    code, out = run(capsys, "report", "funnel", "--by", "source", "--json",
                    "--since", "2026-03-01T00:00:00Z", "--until", "2026-03-02T00:00:00Z")
    assert code == 0
    unknown = json.loads(out)["groups"]["unknown"]
    assert (unknown["leads"], unknown["won"], unknown["lost"]) == (1, 1, 0)  # captured as its history began
