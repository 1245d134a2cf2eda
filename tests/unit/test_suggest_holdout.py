"""`leadflow policy suggest --holdout`: on a CRM-like history where the criterion is planted (a
webinar, then the pricing page, is won 70% of the time; anything else 10%), the criterion is
found, and the figures on the held-out leads are the ones an independent count of the simulated
held-out results gives. The same seed holds out the same leads, the archive reads the same
history as the log, and a hold-out without a won lead, or none at all, says so."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]

from leadflow.archive.events import EventArchive, Taken
from leadflow.cli.main import main
from leadflow.db.database import Database
from leadflow.replay import holdout
from leadflow.replay.simulate import simulate_many
from rules.identity import lead_key, with_id
from rules.models import Event, LeadRef
from tests.support import ROOT

POLICY = str(ROOT / "policies" / "lead-lifecycle.v1.yaml")
PAIR = "webinar_attended -> page_view /pricing"
START = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
LEADS = 1500


def history(leads: int = LEADS, seed: int = 7, planted: float = 0.7, rest: float = 0.1
            ) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """Plain events as a CRM import writes them (the lead by its e-mail, an `outcome` at the
    deal's close) and who was won, by lead id."""
    rng = random.Random(seed)
    lines: list[dict[str, Any]] = []
    won: dict[str, bool] = {}
    for i in range(leads):
        email = f"p{i}@co{i % 89}.example"
        at = START + timedelta(hours=rng.uniform(0, 24 * 40))
        profile = {"email": email, "role": rng.choice(["vp", "director", "founder", "manager", "engineer"]),
                   "budget": rng.choice([5000, 20000, 60000]), "company_size": rng.choice([12, 80, 400]),
                   "timeline": rng.choice(["now", "this-quarter", "next-year", "unknown"])}
        steps = [("page_view", {"path": "/blog/lead-scoring"})] * rng.randint(0, 3)
        steps += [("email_open", {})] * rng.randint(0, 2)
        webinar, pricing = rng.random() < 0.35, rng.random() < 0.45
        if pricing:
            steps += [("page_view", {"path": rng.choice(["/pricing", "/pricing/enterprise"])})]
        if rng.random() < 0.08:
            steps.append(("demo_request", {}))
        rng.shuffle(steps)
        if webinar:  # before or after the rest, pricing included: only before is the planted path
            webinar_at = 0 if rng.random() < 0.5 else len(steps)
            steps.insert(webinar_at, ("webinar_attended", {"webinar": "scoring-101"}))
        lines.append({"type": "signup", "at": _iso(at), "lead": profile, "data": {"source": "webinar"}})
        for kind, data in steps:
            at += timedelta(hours=rng.uniform(2, 60))
            lines.append({"type": kind, "at": _iso(at), "lead": {"email": email}, "data": data})
        path = [kind if kind != "page_view" else data["path"] for kind, data in steps]
        sold = rng.random() < (planted if _after(path, "webinar_attended", "/pricing") else rest)
        won[lead_key(LeadRef(email=email))] = sold
        lines.append({"type": "outcome", "at": _iso(at + timedelta(days=20)), "lead": {"email": email},
                      "data": {"outcome": "won" if sold else "lost"}})
    lines.sort(key=lambda line: line["at"])
    return lines, won


def _after(path: list[str], first: str, then: str) -> bool:
    return first in path and any(step.startswith(then) for step in path[path.index(first) + 1:])


def _last(events: list[Event]) -> float:
    return max(e.at for e in events if e.at is not None).timestamp()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def suggest(capsys: pytest.CaptureFixture[str], out: Path, *options: str) -> dict[str, Any]:
    code = main(["policy", "suggest", POLICY, "--out", str(out), "--json", "--processes", "2", *options])
    captured = capsys.readouterr()
    assert code == 0, captured.err

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in suggest's JSON")

    answer: dict[str, Any] = json.loads(captured.out, parse_constant=refuse)
    return answer


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]], dict[str, bool]]:
    lines, won = history()
    return write(tmp_path_factory.mktemp("holdout") / "crm.jsonl", lines), lines, won


def test_the_planted_criterion_is_learned_and_its_effect_measured_on_held_out_leads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        planted: tuple[Path, Any, dict[str, bool]]) -> None:
    log, _, won = planted
    answer = suggest(capsys, tmp_path / "v2.yaml", "--events", str(log))
    top = answer["findings"][0]
    assert top["feature"] == PAIR and top["sure"] and top["lift"] >= 2.5, answer["findings"][:3]
    summary = answer["summary"]
    assert summary["labelled"] == summary["known"] == summary["leads"] and summary["answered"] == 0
    assert any("webinar-then-pricing-page" in change for change in answer["changes"]), answer["changes"]

    figures = answer["holdout"]
    held = {lead_id for lead_id in won if holdout.held_out(lead_id, 1, 0.3)}
    assert (figures["fraction"], figures["seed"]) == (0.3, 1)
    assert figures["leads"] == len(held) and 0.25 < len(held) / LEADS < 0.35
    assert figures["won"] == sum(won[lead_id] for lead_id in held)

    # the same figures, counted here: each version simulated on the held-out leads alone,
    # against who the history says was won
    with open(log, encoding="utf-8") as lines:
        from leadflow.replay.simulate import group

        leads, until = group(lines)
    mine = {lead_id: raws for lead_id, raws in leads.items() if lead_id in held}
    for name, policy in (("current", POLICY), ("proposed", answer["file"])):
        results = simulate_many(policy, mine, until, processes=1)
        truth = [won[r["lead_id"]] for r in results]
        picked = [("sales-ready" in r["path"]) for r in results]
        hits = sum(t and p for t, p in zip(truth, picked, strict=True))
        right = sum(t == p for t, p in zip(truth, picked, strict=True))
        expected = {"picked": sum(picked), "precision": round(hits / sum(picked), 4),
                    "recall": round(hits / sum(truth), 4), "accuracy": round(right / len(truth), 4)}
        assert {k: figures[name][k] for k in expected} == expected, name
        # the policy's ordering: the leads it picked, then by the highest fit + intent reached
        order = [r["peak_score"] + 1000 * p for r, p in zip(results, picked, strict=True)]
        assert figures[name]["roc_auc"] == round(roc_auc_score(truth, order), 4), name
    assert figures["proposed"]["recall"] >= figures["current"]["recall"]
    assert figures["proposed"]["roc_auc"] > figures["current"]["roc_auc"]
    baseline = figures["baseline"]
    assert baseline["roc_auc"] > 0.6 and 0 <= baseline["accuracy"] <= 1
    assert figures["notes"] == [] or all("baseline" in note for note in figures["notes"]), figures["notes"]


def test_the_archive_without_events_reads_the_same_history(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        planted: tuple[Path, list[dict[str, Any]], dict[str, bool]]) -> None:
    log, lines, _ = planted
    url = f"sqlite:///{tmp_path / 'archive.sqlite'}"
    ledger = Database.open(url)
    try:
        by_lead: dict[str, list[Event]] = {}
        for line in lines:
            event = with_id(Event.model_validate(line))
            by_lead.setdefault(lead_key(event.lead), []).append(event)
        # each lead's events as one batch its workflow took at its last event's time
        EventArchive(ledger).add(Taken(lead_id, events, _last(events)) for lead_id, events in by_lead.items())
    finally:
        ledger.close()
    monkeypatch.setenv("LEADFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    archived = suggest(capsys, tmp_path / "from-archive.yaml")
    logged = suggest(capsys, tmp_path / "from-log.yaml", "--events", str(log))
    for key in ("summary", "changes", "holdout"):
        assert archived[key] == logged[key], key
    assert archived["findings"][:20] == logged["findings"][:20]


def test_a_seed_holds_out_the_same_leads_whatever_their_order(
        planted: tuple[Path, list[dict[str, Any]], dict[str, bool]]) -> None:
    _, lines, _ = planted
    leads: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        leads.setdefault(lead_key(LeadRef(email=line["lead"]["email"])), []).append(line)
    learn, held = holdout.split(leads, 0.3, 1)
    assert learn.isdisjoint(held) and learn | held == set(leads)
    assert holdout.split(dict(reversed(leads.items())), 0.3, 1) == (learn, held)
    assert holdout.split(leads, 0.3, 2)[1] != held
    assert held <= holdout.split(leads, 0.5, 1)[1]  # a larger share holds out more of the same


def test_auc_is_mann_whitney_with_ties_counted_half() -> None:
    rng = random.Random(3)
    for _ in range(20):
        labels = [rng.random() < 0.3 for _ in range(200)]
        labels[:2] = [True, False]
        scores = [float(rng.randint(0, 12)) for _ in labels]  # many ties
        assert holdout.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert holdout.auc([True, False], [1.0, 1.0]) == 0.5
    assert holdout.auc([False, False], [1.0, 2.0]) is None and holdout.auc([], []) is None


def test_a_hold_out_without_a_won_lead_says_what_is_undefined(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines, _ = history(leads=120, seed=5, planted=0.0, rest=0.0)
    answer = suggest(capsys, tmp_path / "v2.yaml", "--events", str(write(tmp_path / "lost.jsonl", lines)))
    figures = answer["holdout"]
    assert figures["leads"] > 0 and figures["won"] == 0
    for name in ("current", "proposed"):
        assert figures[name]["recall"] is None and figures[name]["roc_auc"] is None
        assert figures[name]["accuracy"] is not None
    assert set(figures["baseline"].values()) == {None}  # the row's shape, nothing measured
    assert any("no held-out lead was won" in note for note in figures["notes"])
    assert any("no model to fit" in note for note in figures["notes"])


def test_no_hold_out_says_so_and_a_share_outside_0_1_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines, _ = history(leads=40, seed=9)
    log = str(write(tmp_path / "small.jsonl", lines))
    answer = suggest(capsys, tmp_path / "v2.yaml", "--events", log, "--holdout", "0")
    figures = answer["holdout"]
    assert figures["leads"] == 0
    for name in ("current", "proposed", "baseline"):
        assert figures[name] == {"picked": None, "precision": None, "recall": None, "accuracy": None,
                                 "roc_auc": None}
    assert answer["summary"]["leads"] == 40 and "no hold-out" in figures["notes"][0]
    for share in ("1", "-0.2", "nan", "a third"):
        with pytest.raises(SystemExit) as refused:
            main(["policy", "suggest", POLICY, "--events", log, "--holdout", share])
        assert refused.value.code == 2
        assert "--holdout" in capsys.readouterr().err


def test_the_hold_out_is_in_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines, _ = history(leads=200, seed=4)
    code = main(["policy", "suggest", POLICY, "--events", str(write(tmp_path / "h.jsonl", lines)),
                 "--out", str(tmp_path / "v2.yaml"), "--processes", "1"])
    out = capsys.readouterr().out
    assert code == 0
    section = out[out.index("held out (fraction 0.3, seed 1)"):].splitlines()
    assert [row.split()[0] for row in section[2:5]] == ["current", "proposed", "baseline"]
    assert all(a < b for a, b in pairwise([out.index("before a win"), out.index("held out"),
                                           out.index("its diff")]))
