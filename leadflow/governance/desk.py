"""What the policy desk shows, worked out from the registry and the event archive: the version
that runs and who agreed to it, what each of its rules did in the last 30 days, a proposal's
problems by line and its own tests, what it would have changed on the archive, and what its
activation does to the leads running now.

The figures come from the one lifecycle (leadflow.replay.simulate runs rules/ as the workers do)
on what the archive holds, so they say what the live leads did and would have done. A replay of
a large archive takes a while: results are kept per version and archive state (`Replays`)."""

from __future__ import annotations

import contextlib
import difflib
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from leadflow.db.database import Database
from leadflow.db.schema import events as events_table
from leadflow.db.schema import policy_log
from leadflow.delivery.content import check_policy_content
from leadflow.governance.registry import Registry, Version
from leadflow.replay.diff import compare
from leadflow.replay.simulate import archived, at_of, simulate_many
from rules.compile import CompiledPolicy, compile_policy
from rules.lifecycle import DEFAULT_RETENTION
from rules.policytest import CaseResult, run_tests
from rules.validate import PolicyInvalid, load_policy_bytes
from rules.yaml_lines import YamlError, load_yaml

WINDOW = 30 * 86400.0  # seconds: "the last 30 days" of each rule's activity
SHOWN_LEADS = 10  # leads named (linked) per rule; the rest are counted
IN_PROCESS = 20_000  # events a replay runs in the API's own process; above, on every core
_VERSION_LINE = re.compile(r"^version:[ \t]*\d+(?P<rest>[ \t]*(#[^\r\n]*)?)\r?$", re.MULTILINE)

History = dict[str, list[dict[str, Any]]]
_IN_PROCESS = threading.Lock()


@dataclass(frozen=True)
class Approval:
    who: str
    team: str
    at: float


@dataclass(frozen=True)
class Running:
    """The version that runs, who activated it and when, and who approved it."""

    name: str
    version: int
    sha: str
    rollout: str
    activated_at: float
    activated_by: str
    approvals: list[Approval]
    text: str


@dataclass
class Activity:
    """What one rule did in the window: how often it fired, and for which leads."""

    fired: int = 0
    leads: Counter[str] = field(default_factory=Counter)

    def shown(self) -> list[str]:
        return [lead for lead, _ in self.leads.most_common(SHOWN_LEADS)]


@dataclass(frozen=True)
class Checked:
    """A proposal's text as the desk checks it: the problems by line (None: the whole file),
    or the compiled version and its own tests' results."""

    compiled: CompiledPolicy | None
    problems: list[tuple[int | None, str]]
    tests: list[CaseResult]


def names(registry: Registry) -> list[str]:
    return sorted({v.name for v in registry.versions()})


def running(registry: Registry, name: str) -> Running | None:
    state = registry.state(name)
    if state is None:
        return None
    found = registry.by_sha(state.sha)
    assert found is not None  # an active version was proposed first (Registry.activate)
    entries = _log(registry.ledger, state.sha)
    activated = [e for e in entries if e["action"] == "activated"]
    last = activated[-1] if activated else {"id": 1 << 62, "who": "", "at": state.activated_at}
    before = activated[-2]["id"] if len(activated) > 1 else 0
    # those that activated it this time (an earlier run's approvals activated that run)
    approvals = [Approval(e["who"], e["team"], e["at"]) for e in entries
                 if e["action"] == "approved" and before < e["id"] < last["id"]]
    return Running(name, state.version, state.sha, state.rollout, state.activated_at, str(last["who"]),
                   approvals, found.text.decode("utf-8"))


def _log(ledger: Database, sha: str) -> list[dict[str, Any]]:
    with ledger.engine.connect() as db:
        return [dict(row._mapping) for row in db.execute(
            select(policy_log).where(policy_log.c.sha == sha).order_by(policy_log.c.id))]


def check(raw: bytes, file: str, content_dir: Path) -> Checked:
    """Every problem with its line (the schema, the semantics, the templates), then its tests."""
    try:
        loaded = load_policy_bytes(raw, file)
    except PolicyInvalid as err:
        return Checked(None, [(p.line or None, f"{p.rule}: {p.message}" if p.rule else p.message)
                              for p in err.problems], [])
    if problems := check_policy_content(loaded, content_dir):
        return Checked(None, [(p.line or None, f"{p.rule}: {p.message}" if p.rule else p.message)
                              for p in problems], [])
    compiled = compile_policy(loaded)
    return Checked(compiled, [], run_tests(compiled))


def next_version(registry: Registry, name: str) -> int:
    return max((v.version for v in registry.versions(name)), default=0) + 1


def renumbered(text: str, version: int) -> str:
    """The text with its top-level `version:` set to `version` (a rollback is a new version with
    an old text: a name and version stand for one text only)."""
    if not _VERSION_LINE.search(text):
        raise ValueError("the policy has no top-level `version:` line to renumber")
    return _VERSION_LINE.sub(lambda m: f"version: {version}{m['rest']}", text.replace("\r\n", "\n"), count=1)


def promoted(text: str, where: tuple[Any, ...], variant: str) -> str:
    """The text with the A/B test's `send` at `where` (rules.variants.AbStep.where) sending
    `variant` to everyone: the `send:` key's value replaced, in flow style on its line(s) or in
    block style on the lines under it; the rest of the file, comments included, as it was."""
    lines = text.splitlines(keepends=True)
    try:
        loaded = load_yaml(text.encode("utf-8"))
    except YamlError as err:
        raise ValueError(f"the policy does not parse: line {err.line}") from None
    at = loaded.line_of(where) - 1
    # flow style may put several sends on one line: this one is the k-th there, in file order
    sends = [path for path, line in loaded.lines.items() if path[-1:] == ("send",) and line - 1 == at]
    k = sends.index(tuple(where)) if tuple(where) in sends else 0
    key = -1
    for _ in range(k + 1):
        key = lines[at].find("send:", key + 1) if 0 <= at < len(lines) else -1
        if key < 0:
            raise ValueError(f"no `send:` at line {at + 1} to promote {variant} in")
    head, rest = lines[at][:key + len("send:")], lines[at][key + len("send:"):]
    # flow style (`{variants: [...], split: [...]}`, which may run on to the next lines), or
    # block style (nothing after the key but a comment)
    if rest.strip() and not rest.strip().startswith("#"):
        start = len(head) + len(rest) - len(rest.lstrip())
        joined = "".join(lines[at:])
        depth, end = 0, start
        for end in range(start, len(joined)):
            depth += {"{": 1, "}": -1}.get(joined[end], 0)
            if depth == 0:
                break
        tail = joined[end + 1:]
        return "".join(lines[:at]) + head + " " + variant + tail
    # block style: the value is every line after, indented deeper than the key
    end = at + 1
    while end < len(lines) and (not lines[end].strip() or
                                len(lines[end]) - len(lines[end].lstrip()) > key):
        end += 1
    return "".join(lines[:at]) + head + " " + variant + "\n" + "".join(lines[end:])


def version_line(text: str) -> int | None:
    """The line of the top-level `version:`."""
    found = _VERSION_LINE.search(text)
    return text.count("\n", 0, found.start()) + 1 if found else None


def text_diff(old: Version | None, new: Version) -> list[tuple[str, str]]:
    """The lines of a unified diff of two versions' texts, each with its kind (add, del, hunk,
    same) for the page to colour."""
    before = old.text.decode("utf-8").splitlines() if old is not None else []
    lines = difflib.unified_diff(before, new.text.decode("utf-8").splitlines(),
                                 f"v{old.version}" if old else "(nothing)", f"v{new.version}",
                                 lineterm="", n=2)
    out = []
    for line in lines:
        kind = ("hunk" if line.startswith("@@") else "head" if line.startswith(("---", "+++"))
                else "add" if line.startswith("+") else "del" if line.startswith("-") else "same")
        out.append((kind, line))
    return out


# -- replays of the archive -----------------------------------------------------------------------

class Replays:
    """Replays of the archive under a version, kept while the archive is as it was (its row
    count and newest `taken_at`): a page shown again costs a query, not a replay."""

    def __init__(self, ledger: Database, retention: float = DEFAULT_RETENTION) -> None:
        self.ledger = ledger
        self.retention = retention
        self._kept: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def _mark(self) -> tuple[int, float]:
        with self.ledger.engine.connect() as db:
            count, newest = db.execute(select(func.count(), func.max(events_table.c.taken_at))).one()
        return int(count), float(newest or 0)

    def _cached(self, key: tuple[Any, ...], make: Any) -> Any:
        full = (*key, self._mark())
        with self._lock:
            if full in self._kept:
                return self._kept[full]
        value = make()
        with self._lock:
            if len(self._kept) > 32:
                self._kept.clear()
            self._kept[full] = value
        return value

    def history(self) -> tuple[History, datetime | None]:
        return self._cached(("history",), lambda: archived(self.ledger))  # type: ignore[no-any-return]

    def results(self, version: Version, until: datetime | None) -> list[dict[str, Any]]:
        """Every archived lead's result under `version`, virtual time run to `until` (None: the
        archive's last event)."""
        def make() -> list[dict[str, Any]]:
            leads, last = self.history()
            return self._replay(version, leads, until or last)
        return self._cached(("results", version.sha, until), make)  # type: ignore[no-any-return]

    def _replay(self, version: Version, leads: History, until: datetime | None) -> list[dict[str, Any]]:
        if not leads:
            return []
        events = sum(map(len, leads.values()))
        with _policy_file(version) as path:
            if events > IN_PROCESS:  # processes of their own, each with its policy
                return simulate_many(str(path), leads, until, None, retention=self.retention)
            # in this process the replay's policy is the module's (leadflow.replay.simulate): one
            # replay at a time, or two pages at once would run some leads under the other's rules
            with _IN_PROCESS:
                return simulate_many(str(path), leads, until, 1, retention=self.retention)

    def activity(self, version: Version, now: float, since: float) -> dict[str, Activity]:
        """Each rule's firings from `since` to `now`: a replay to now less a replay of what came
        before `since`, lead by lead (the lifecycle is deterministic: the runs agree up to it).
        Kept for the hour while the archive is unchanged."""
        def make() -> dict[str, Activity]:
            leads, _ = self.history()
            before = {lead: kept for lead, evs in leads.items()
                      if (kept := [e for e in evs if at_of(str(e["at"])).timestamp() < since])}
            after = self._replay(version, leads, datetime.fromtimestamp(now, timezone.utc))
            earlier = {r["lead_id"]: Counter(r["fired"] + r.get("acted", []))
                       for r in self._replay(version, before, datetime.fromtimestamp(since, timezone.utc))}
            out: dict[str, Activity] = {}
            for result in after:
                was = earlier.get(result["lead_id"], Counter())
                for rule, n in (Counter(result["fired"] + result.get("acted", [])) - was).items():
                    got = out.setdefault(rule, Activity())
                    got.fired += n
                    got.leads[result["lead_id"]] += n
            return out
        return self._cached(("activity", version.sha, int(now // 3600), since), make)  # type: ignore[no-any-return]

    def diff(self, running: Version, proposed: Version) -> dict[str, Any]:
        """`policy diff` of the two versions on the archive (its JSON report)."""
        def make() -> dict[str, Any]:
            leads, until = self.history()
            old, new = self.results(running, until), self.results(proposed, until)
            with _policy_file(running) as a, _policy_file(proposed) as b:
                report = compare(str(a), str(b), leads, old, new, until)
            report["old"]["file"], report["new"]["file"] = f"v{running.version}", f"v{proposed.version}"
            report["activation"] = moves(old, new, final_states(running))
            return report
        return self._cached(("diff", running.sha, proposed.sha), make)  # type: ignore[no-any-return]


def final_states(version: Version) -> frozenset[str]:
    return compile_policy(load_policy_bytes(version.text, version.file)).final_states


def moves(old: list[dict[str, Any]], new: list[dict[str, Any]], final: frozenset[str]) -> dict[str, Any]:
    """What an activation that moves running leads does to them: the leads whose run is still
    going (not in a final state under the running version), and how many of them would stand in
    another state under the new one, by move."""
    running_now = [(a, b) for a, b in zip(old, new, strict=True) if a["state"] not in final]
    moved = Counter(f"{a['state']} -> {b['state']}" for a, b in running_now if a["state"] != b["state"])
    return {"running": len(running_now), "moving": sum(moved.values()), "moves": dict(moved.most_common())}


@contextlib.contextmanager
def _policy_file(version: Version) -> Iterator[Path]:
    """A version's text in a file of its own, for the replay's processes to load."""
    with tempfile.TemporaryDirectory(prefix="leadflow-desk-") as folder:
        path = Path(folder) / "policy.yaml"  # never the proposer's file name: it is anyone's text
        path.write_bytes(version.text)
        yield path


def iter_versions(registry: Registry, name: str) -> Iterator[tuple[Version | None, Version]]:
    """Each version with the one before it (None for the first), newest first."""
    versions = registry.versions(name)
    for i in range(len(versions) - 1, -1, -1):
        yield (versions[i - 1] if i else None), versions[i]
