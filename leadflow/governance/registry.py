"""Which policy version decides, and who agreed to it: proposals, approvals, activations and
shadow runs, kept in the shared database (the delivery ledger's) with who, when and the content
hash. Workers read the active version's text from here by its hash, so every worker on every
machine evaluates the same version; the policy folder is where files are written and reviewed.

Rules of the road, enforced here whatever door asks (CLI or API):
- a proposal is a text that validates and passes its own tests (governance.checks says so
  before `propose` is called); a name and version stand for one text only;
- an approval comes from an owner of the version active now (the proposed file's own owners only
  while none is active), as marketing or sales: a file cannot name its own approvers;
- activation needs one marketing and one sales approval, from two different people.
A fresh database takes the shipped policy files on first start, recorded as such."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from leadflow.db.database import Database
from leadflow.db.schema import policy_log, policy_state, policy_versions, shadow_decisions, shadow_leads
from rules.compile import CompiledPolicy
from rules.policy import Policy

FIRST_START = "leadflow (first start)"
Rollout = Literal["move", "pin"]


class GovernanceError(Exception):
    """A request the rules refuse (said to the person as it is)."""


class NotFound(GovernanceError):
    """No such version was proposed."""


class NotOwner(GovernanceError):
    """An approval from someone who is not an owner of the version that runs now."""


class Conflict(GovernanceError):
    """Not now: approvals missing, another text under the same version, nothing active yet."""


@dataclass(frozen=True)
class Version:
    name: str
    version: int
    sha: str
    file: str
    text: bytes
    proposed_by: str
    proposed_at: float


@dataclass(frozen=True)
class State:
    name: str
    version: int
    sha: str
    rollout: Rollout
    activated_at: float
    shadow_version: int | None
    shadow_sha: str | None


@dataclass(frozen=True)
class Approvals:
    marketing: tuple[str, ...]
    sales: tuple[str, ...]

    def enough(self) -> bool:
        """One marketing and one sales owner, and two people (someone on both lists counts once)."""
        return any(m != s for m in self.marketing for s in self.sales)

    def missing(self) -> str:
        if not self.marketing and not self.sales:
            return "no approval yet: one marketing and one sales owner must approve"
        if not self.marketing:
            return "no marketing owner has approved"
        if not self.sales:
            return "no sales owner has approved"
        return "the marketing and the sales approval must come from two different people"


def rollout_of(policy: Policy) -> Rollout:
    """The file's own `rollout.running_leads`, in activation's words (stay is pin)."""
    return "move" if policy.rollout.running_leads == "move" else "pin"


class Registry:
    def __init__(self, ledger: Database, clock: Any = time.time) -> None:
        self.ledger = ledger
        self.clock = clock

    # -- reading -----------------------------------------------------------------------------

    def state(self, name: str) -> State | None:
        with self.ledger.engine.connect() as db:
            row = db.execute(select(policy_state).where(policy_state.c.name == name)).first()
        return State(**row._mapping) if row is not None else None

    def version(self, name: str, version: int) -> Version | None:
        with self.ledger.engine.connect() as db:
            row = db.execute(select(policy_versions).where(and_(
                policy_versions.c.name == name, policy_versions.c.version == version))).first()
        return _version(row) if row is not None else None

    def by_sha(self, sha: str) -> Version | None:
        with self.ledger.engine.connect() as db:
            row = db.execute(select(policy_versions).where(policy_versions.c.sha == sha)).first()
        return _version(row) if row is not None else None

    def versions(self, name: str | None = None) -> list[Version]:
        query = select(policy_versions).order_by(policy_versions.c.name, policy_versions.c.version)
        if name is not None:
            query = query.where(policy_versions.c.name == name)
        with self.ledger.engine.connect() as db:
            return [_version(row) for row in db.execute(query)]

    def approvals(self, sha: str, owners: dict[str, list[str]] | None = None) -> Approvals:
        """The approvals of a version's text given since it last ran (an approval that once
        activated it does not activate it again: going back is approved anew), from `owners`
        only when given (the owners of the version that runs now)."""
        c = policy_log.c
        with self.ledger.engine.connect() as db:
            ran = db.execute(select(func.max(c.id)).where(c.sha == sha, c.action == "activated")).scalar()
            rows = db.execute(select(c.who, c.team).where(and_(
                c.sha == sha, c.action == "approved", c.id > (ran or 0))).order_by(c.id)).all()
        allowed = None if owners is None else {
            team: {o.strip().lower() for o in owners.get(team, [])} for team in ("marketing", "sales")}
        marketing: list[str] = []
        sales: list[str] = []
        for who, team in rows:
            for t in team.split(","):
                if allowed is None or who in allowed.get(t, set()):
                    (marketing if t == "marketing" else sales).append(who)
        return Approvals(tuple(dict.fromkeys(marketing)), tuple(dict.fromkeys(sales)))

    def log(self, name: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest entries first."""
        query = select(policy_log).order_by(policy_log.c.id.desc()).limit(limit)
        if name is not None:
            query = query.where(policy_log.c.name == name)
        with self.ledger.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]

    # -- changing ----------------------------------------------------------------------------

    def propose(self, policy: CompiledPolicy, who: str) -> tuple[Version, bool]:
        """Keep the version's text; (the version, whether it is new). Proposing the same text
        again changes nothing; another text under a name and version already kept is refused."""
        text = policy.source.decode("utf-8")
        with self.ledger.writing() as db:
            same = db.execute(select(policy_versions).where(and_(
                policy_versions.c.name == policy.name, policy_versions.c.version == policy.version))).first()
            if same is not None:
                if same.sha != policy.sha:
                    raise Conflict(
                        f"{policy.name} v{policy.version} was proposed before with other content "
                        f"(sha256 {same.sha[:12]}); give the changed file a new version number")
                return _version(same), False
            now = self.clock()
            db.execute(insert(policy_versions).values(
                sha=policy.sha, name=policy.name, version=policy.version, file=policy.file, text=text,
                proposed_by=who, proposed_at=now))
            self._note(db, policy.name, policy.version, policy.sha, "proposed", who, detail=policy.file)
        return Version(policy.name, policy.version, policy.sha, policy.file, policy.source, who, now), True

    def approve(self, name: str, version: int, who: str,
                owners: dict[str, list[str]], detail: str = "") -> tuple[str, Approvals]:
        """Record `who`'s approval; the teams it counts for, and the approvals so far. `owners` is
        the `owners:` section (marketing and sales lists) of the version that may approve (see
        leadflow.operations.governance); `detail` how the approver was known, for the log."""
        found = self._proposed(name, version)
        email = who.strip().lower()
        teams = [team for team in ("marketing", "sales")
                 if email in {o.strip().lower() for o in owners.get(team, [])}]
        if not teams:
            listed = ", ".join(f"{team}: {', '.join(owners.get(team, [])) or '-'}"
                               for team in ("marketing", "sales"))
            raise NotOwner(f"{who} is not an owner who may approve {name} v{version} (the owners of the "
                           f"version that runs: {listed})")
        so_far = self.approvals(found.sha)
        with self.ledger.writing() as db:
            if email not in {*so_far.marketing, *so_far.sales}:  # a person approves once
                self._note(db, name, version, found.sha, "approved", email, team=",".join(teams),
                           detail=detail)
        return ",".join(teams), self.approvals(found.sha)

    def activate(self, name: str, version: int, who: str, rollout: Rollout,
                 owners: dict[str, list[str]] | None = None) -> State:
        """`owners`: those of the version that runs now; an approval from someone who is no longer
        one does not count."""
        found = self._proposed(name, version)
        approvals = self.approvals(found.sha, owners)
        if not approvals.enough():
            raise Conflict(f"{name} v{version} cannot be activated: {approvals.missing()}")
        now = self.clock()
        with self.ledger.writing() as db:
            current = db.execute(select(policy_state).where(policy_state.c.name == name)).first()
            if current is None:
                db.execute(insert(policy_state).values(name=name, version=version, sha=found.sha,
                                                       rollout=rollout, activated_at=now))
            else:
                db.execute(update(policy_state).where(policy_state.c.name == name).values(
                    version=version, sha=found.sha, rollout=rollout, activated_at=now))
            was = (f"; v{current.version} was active"
                   if current is not None and current.version != version else "")
            self._note(db, name, version, found.sha, "activated", who, detail=f"rollout {rollout}{was}")
        state = self.state(name)
        assert state is not None
        return state

    def shadow(self, name: str, version: int | None, who: str) -> State:
        """Run `version` in shadow beside the active one (None: stop the shadow run)."""
        current = self.state(name)
        if current is None:
            raise Conflict(f"{name} has no active version yet: nothing to shadow beside")
        found = self._proposed(name, version) if version is not None else None
        if found is not None and found.sha == current.sha:
            raise Conflict(f"{name} v{version} is the active version; shadow a different one")
        with self.ledger.writing() as db:
            db.execute(update(policy_state).where(policy_state.c.name == name).values(
                shadow_version=found.version if found else None, shadow_sha=found.sha if found else None))
            if found is not None and found.sha != current.shadow_sha:
                # a new shadow run starts afresh: every lead from where it stands live, and the
                # report covers this run only (an earlier run's leads missed what came between)
                db.execute(delete(shadow_leads).where(shadow_leads.c.sha == found.sha))
                db.execute(delete(shadow_decisions).where(shadow_decisions.c.sha == found.sha))
            if found is not None:
                self._note(db, name, found.version, found.sha, "shadowed", who,
                           detail=f"beside active v{current.version}")
            elif current.shadow_sha is not None:
                self._note(db, name, current.shadow_version or 0, current.shadow_sha, "shadow-stopped", who)
        state = self.state(name)
        assert state is not None
        return state

    def first_start(self, name: str, shipped: Iterable[CompiledPolicy]) -> State | None:
        """A database that has never had `name` active takes the shipped files: each kept as
        proposed, the newest activated, all recorded as the first start. Another process that
        got there first wins; its choice is returned."""
        shipped = sorted(shipped, key=lambda p: p.version)
        if not shipped:
            return self.state(name)
        for attempt in range(20):
            try:
                return self._first_start(name, shipped)
            except (IntegrityError, OperationalError):
                # another process (the API beside the worker, a second worker) got there at the
                # same moment: a unique key, or SQLite's lock on upgrading a read to a write
                if (state := self.state(name)) is not None:
                    return state
                time.sleep(0.05 * (attempt + 1))
        return self._first_start(name, shipped)

    def _first_start(self, name: str, shipped: list[CompiledPolicy]) -> State | None:
        newest = shipped[-1]
        now = self.clock()
        with self.ledger.writing() as db:
            if db.execute(select(func.count()).select_from(policy_state).where(
                    policy_state.c.name == name)).scalar_one():
                return self.state(name)
            db.execute(insert(policy_state).values(name=name, version=newest.version, sha=newest.sha,
                                                   rollout=rollout_of(newest.policy), activated_at=now))
            for policy in shipped:
                known = db.execute(select(policy_versions.c.sha).where(and_(
                    policy_versions.c.name == name, policy_versions.c.version == policy.version))).first()
                if known is None:
                    db.execute(insert(policy_versions).values(
                        sha=policy.sha, name=name, version=policy.version, file=policy.file,
                        text=policy.source.decode("utf-8"), proposed_by=FIRST_START, proposed_at=now))
                    self._note(db, name, policy.version, policy.sha, "proposed", FIRST_START,
                               detail=policy.file)
            self._note(db, name, newest.version, newest.sha, "activated", FIRST_START,
                       detail=f"first start: the shipped file {newest.file} (newest valid version); "
                              f"rollout {rollout_of(newest.policy)}")
        return self.state(name)

    # -- inside ------------------------------------------------------------------------------

    def _proposed(self, name: str, version: int) -> Version:
        found = self.version(name, version)
        if found is None:
            raise NotFound(f"{name} v{version} has not been proposed (`leadflow policy propose FILE`)")
        return found

    def _note(self, db: Any, name: str, version: int, sha: str, action: str, who: str, team: str = "",
              detail: str = "") -> None:
        db.execute(insert(policy_log).values(at=self.clock(), name=name, version=version, sha=sha,
                                             action=action, who=who, team=team, detail=detail))


def _version(row: Any) -> Version:
    m = row._mapping
    return Version(m["name"], m["version"], m["sha"], m["file"], m["text"].encode("utf-8"), m["proposed_by"],
                   m["proposed_at"])
