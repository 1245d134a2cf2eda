"""`policy suggest --holdout`: how well a policy picks the leads that were won, measured on leads
the proposal was not learned from.

A seeded share of the history's leads is set aside (`split`: a hash of the seed and the lead's
id, so the same leads are held out on every run, whatever order the log lists them in; leads an
`identify` merged stay on one side). `policy suggest` learns its findings and proposal from the
rest; here the held-out leads are scored three ways:

- the current policy and the proposed one: a lead is picked when it reached `sales-ready`;
  precision, recall and accuracy of picked against won; ROC AUC of the ordering the policy
  makes: the leads it picked first, then by the highest fit + intent each reached
  (`LeadResult.peak_score`);
- a logistic regression on the same columns (the profile's fields, texts one-hot and numbers as
  numbers, and counts of the lead's events per type and site section before any sales answer or
  outcome), fitted on the learning leads: what a data scientist would build as the reference. It
  picks the held-out leads it rates most likely won, as many as the learning leads' win rate
  says were won (ties at the last place all in): at probability 0.5 a model of a history where
  about one lead in seven is won picks next to none, and its precision and recall would say
  nothing. Its AUC is from the probabilities.

A lead was won when the history's outcome says so, else when sales accepted it in the current
policy's simulation (`suggest.won`); every other lead was not. The labels are the current run's
for both policies: under the proposed one a sales answer may find no hand-off open and be
skipped, and the lead was still won. A figure with nothing to stand on (no lead picked, no lead
won) is None (null in JSON, - in the table), with a note saying why, never NaN."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from leadflow.replay.simulate import people
from leadflow.replay.suggest import SKIP, before_answer, step, won
from rules.identity import IDENTITY


def held_out(lead_id: str, seed: int, fraction: float) -> bool:
    """Whether the lead is set aside: the same for the same seed, lead and fraction, on every run."""
    digest = hashlib.sha256(f"{seed}:{lead_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split(leads: dict[str, list[dict[str, Any]]], fraction: float, seed: int
          ) -> tuple[set[str], set[str]]:
    """The ids of the leads to learn from and of those held out. Leads merged into one another
    are one person and go together, by the group's first lead."""
    learn: set[str] = set()
    held: set[str] = set()
    for group in people(leads):
        (held if held_out(next(iter(group)), seed, fraction) else learn).update(group)
    return learn, held


def auc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """ROC AUC by Mann-Whitney: the chance that a won lead scores above a lead not won, ties
    counted half. None when either side is empty."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):  # tied scores share the mean of their ranks (1-based)
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    u = sum(r for r, yes in zip(ranks, labels, strict=True) if yes) - positives * (positives + 1) / 2
    return u / (positives * negatives)


@dataclass(frozen=True)
class Figures:
    """How one way of picking leads did on the held-out ones."""

    picked: int | None  # None: not measured
    precision: float | None
    recall: float | None
    accuracy: float | None
    roc_auc: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"picked": self.picked, **{name: None if value is None else round(value, 4)
                                          for name, value in (("precision", self.precision),
                                                              ("recall", self.recall),
                                                              ("accuracy", self.accuracy),
                                                              ("roc_auc", self.roc_auc))}}


UNMEASURED = Figures(None, None, None, None, None)


def figures(labels: Sequence[bool], picked: Sequence[bool], scores: Sequence[float]) -> Figures:
    hits = sum(1 for yes, pick in zip(labels, picked, strict=True) if yes and pick)
    right = sum(1 for yes, pick in zip(labels, picked, strict=True) if yes == pick)
    chosen, positives = sum(picked), sum(labels)
    return Figures(chosen, hits / chosen if chosen else None, hits / positives if positives else None,
                   right / len(labels) if labels else None, auc(labels, scores))


def policy_figures(labels: Sequence[bool], results: Sequence[dict[str, Any]]) -> Figures:
    """A policy's picks (sales-ready reached) and its ordering: picked leads first, then by the
    highest fit + intent reached (a lift above every peak puts the picked ones on top)."""
    picked = ["sales-ready" in r["path"] for r in results]
    peaks = [float(r.get("peak_score") or 0.0) for r in results]
    lift = 1.0 + max(peaks, default=0.0)
    return figures(labels, picked, [peak + lift * pick for peak, pick in zip(peaks, picked, strict=True)])


def columns(raws: list[dict[str, Any]], profile: Collection[str] | None) -> dict[str, float | str]:
    """The columns the baseline reads for a lead: its profile's fields (the policy's declared
    ones, else every field its events brought; texts stay texts for one-hot, numbers and
    booleans are numbers) and how many events of each type and site section it took, before any
    sales answer or outcome."""
    row: dict[str, float | str] = {}
    counts: Counter[str] = Counter()
    for raw in before_answer(raws):
        for name, value in (raw.get("lead") or {}).items():
            if name in IDENTITY or (profile is not None and name not in profile):
                continue
            if isinstance(value, (bool, int, float)) and math.isfinite(value):
                row[name] = float(value)
            elif isinstance(value, str):
                row[name] = value
            elif isinstance(value, list):
                row.update((f"{name}={item}", 1.0) for item in value if isinstance(item, str))
        if raw["type"] in SKIP:
            continue
        counts[f"events {raw['type']}"] += 1
        if raw["type"] == "page_view":
            counts[f"events {step(raw)}"] += 1
    row.update((name, float(n)) for name, n in counts.items())
    return row


def baseline(learn: list[tuple[dict[str, float | str], bool]],
             held: list[dict[str, float | str]]) -> tuple[list[bool], list[float]] | str:
    """The logistic regression's picks and probabilities for the held-out rows, fitted on the
    learning ones; or why there is none. It picks as many as the learning leads' win rate says."""
    if len({yes for _, yes in learn}) < 2:
        return "the learning leads are all won or all not won: no model to fit"
    if not any(row for row, _ in learn):
        return "the learning leads have no column to learn from (no profile, no events)"
    # sklearn loads in a second or so: only when a hold-out runs
    from sklearn.feature_extraction import DictVectorizer  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import MaxAbsScaler  # type: ignore[import-untyped]

    # scaled so a budget in the tens of thousands and a count of page views weigh alike;
    # MaxAbsScaler keeps the one-hot columns sparse
    model = make_pipeline(DictVectorizer(), MaxAbsScaler(), LogisticRegression(max_iter=2000))
    model.fit([row for row, _ in learn], [yes for _, yes in learn])
    chances = [float(p) for p in model.predict_proba(held)[:, list(model.classes_).index(True)]]
    share = sum(yes for _, yes in learn) / len(learn)
    places = round(share * len(held))
    if not places:
        return [False] * len(held), chances
    last = sorted(chances, reverse=True)[places - 1]
    return [p >= last for p in chances], chances


@dataclass
class Holdout:
    fraction: float
    seed: int
    leads: int = 0
    won: int = 0
    current: Figures | None = None
    proposed: Figures | None = None
    baseline: Figures | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "seed": self.seed, "leads": self.leads, "won": self.won,
                # a row that could not be measured keeps its shape, every figure null: readers
                # find the same keys in every answer
                **{name: (f or UNMEASURED).as_dict()
                   for name, f in (("current", self.current), ("proposed", self.proposed),
                                   ("baseline", self.baseline))},
                "baseline_model": "logistic regression; picks its likeliest held-out leads, as many as "
                                  "the learning leads' win rate",
                "notes": self.notes}


def measure(leads: dict[str, list[dict[str, Any]]], current: list[dict[str, Any]],
            proposed: list[dict[str, Any]], held: set[str], fraction: float, seed: int,
            profile: Collection[str] | None) -> Holdout:
    """The three ways of picking on the held-out leads. `current` and `proposed`: every lead's
    result under each policy (the learning leads' current results train the baseline)."""
    out = Holdout(fraction, seed)
    # one person once: a lead merged into another is its survivor's story
    kept = sorted((r for r in current if r["state"] != "merged"), key=lambda r: r["lead_id"])
    mine = [r for r in kept if r["lead_id"] in held]
    if not mine:
        out.notes.append("no hold-out (--holdout 0): the proposal is learned from every lead and not "
                         "measured on leads it did not see" if fraction == 0 else
                         "no lead fell in the hold-out (too few leads for the fraction): nothing to measure")
        return out
    labels = {r["lead_id"]: won(r) is True for r in kept}
    truth = [labels[r["lead_id"]] for r in mine]
    out.leads, out.won = len(mine), sum(truth)
    by_id = {r["lead_id"]: r for r in proposed}
    out.current = policy_figures(truth, mine)
    out.proposed = policy_figures(truth, [by_id[r["lead_id"]] for r in mine])
    learning = [(columns(leads[r["lead_id"]], profile), labels[r["lead_id"]])
                for r in kept if r["lead_id"] not in held]
    fitted = baseline(learning, [columns(leads[r["lead_id"]], profile) for r in mine])
    if isinstance(fitted, str):
        out.notes.append(f"baseline: none, {fitted}")
    else:
        out.baseline = figures(truth, *fitted)
    if not out.won:
        out.notes.append("no held-out lead was won: recall and ROC AUC are undefined")
    elif out.won == out.leads:
        out.notes.append("every held-out lead was won: ROC AUC is undefined")
    for name, f in (("current", out.current), ("proposed", out.proposed), ("baseline", out.baseline)):
        if f is not None and not f.picked:
            out.notes.append(f"{name} picked no held-out lead: its precision is undefined")
    return out


def table(holdout: Holdout, current: str, proposed: str) -> str:
    """The hold-out section of suggest's report."""
    head = f"held out (fraction {holdout.fraction:g}, seed {holdout.seed}): "
    if not holdout.leads:
        return head + "\n".join(holdout.notes)
    leads = f"{holdout.leads} lead{'s' * (holdout.leads != 1)}"
    out = [head + f"{leads}, {holdout.won} of them won; picked = reached sales-ready "
                  "(baseline: a logistic regression on the same columns, picking its likeliest leads, as "
                  "many as the learning leads' win rate)",
           f"{'':<28} {'picked':>7} {'precision':>10} {'recall':>8} {'accuracy':>9} {'ROC AUC':>8}"]
    for name, f in ((current, holdout.current), (proposed, holdout.proposed),
                    ("baseline", holdout.baseline)):
        if f is None:
            out.append(f"{name:<28} {'-':>7} {'-':>10} {'-':>8} {'-':>9} {'-':>8}")
            continue
        out.append(f"{name:<28} {f.picked:>7} {_pct(f.precision):>10} {_pct(f.recall):>8} "
                   f"{_pct(f.accuracy):>9} {'-' if f.roc_auc is None else f'{f.roc_auc:.3f}':>8}")
    out += [f"  ({note})" for note in holdout.notes]
    return "\n".join(out)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
