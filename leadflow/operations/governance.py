"""Proposing, approving, activating and shadowing policy versions: the operations behind both
`leadflow policy propose|approve|activate|shadow|log` and the API's /v1/policies routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leadflow.governance.checks import checked
from leadflow.governance.registry import Approvals, NotFound, Registry, Rollout, State, Version, rollout_of
from rules.validate import load_policy_bytes


def propose(registry: Registry, raw: bytes, file: str, content_dir: Path, who: str) -> dict[str, Any]:
    """Raises ProposalRefused (it does not validate, or its own tests fail) or GovernanceError."""
    compiled = checked(raw, file, content_dir)
    version, new = registry.propose(compiled, who)
    owners = compiled.policy.owners
    return {"policy": version.name, "version": version.version, "sha256": version.sha, "new": new,
            "proposed_by": version.proposed_by, "file": version.file,
            "owners": {"marketing": owners.marketing, "sales": owners.sales},
            "approvals": _approvals(registry.approvals(version.sha))}


def approve(registry: Registry, name: str, version: int, who: str, detail: str = "") -> dict[str, Any]:
    """`who` approves: the person a door has established (the API key's or page session's person,
    or `--as` on the database itself, with `detail` saying how). The owners who may approve are
    those of the version that runs now: a file cannot name its own approvers."""
    owners = approvers(registry, name, version)
    teams, approvals = registry.approve(name, version, who, owners, detail)
    return {"policy": name, "version": version, "approved_by": who.strip().lower(), "as": teams.split(","),
            "approvals": _approvals(approvals), "can_activate": approvals.enough()}


def activate(registry: Registry, name: str, version: int, who: str,
             rollout: Rollout | None) -> dict[str, Any]:
    found = registry.version(name, version)
    if found is None:
        raise NotFound(f"{name} v{version} has not been proposed (`leadflow policy propose FILE`)")
    return state(registry.activate(name, version, who, rollout or rollout_for(found),
                                   approvers(registry, name, version)))


def rollout_for(version: Version) -> Rollout:
    """What an activation does to running leads unless told: the version's own `rollout`."""
    return rollout_of(load_policy_bytes(version.text, version.file).policy)


def shadow(registry: Registry, name: str, version: int | None, who: str) -> dict[str, Any]:
    return state(registry.shadow(name, version, who))


def state(s: State) -> dict[str, Any]:
    return {"policy": s.name, "active": s.version, "sha256": s.sha, "rollout": s.rollout,
            "activated_at": s.activated_at, "shadow": s.shadow_version, "shadow_sha256": s.shadow_sha}


def approvers(registry: Registry, name: str, version: int) -> dict[str, list[str]]:
    """The owners of the version active now (a change of owners is approved by the owners it
    replaces); with none active yet, the proposed file's own."""
    found = registry.version(name, version)
    if found is None:
        raise NotFound(f"{name} v{version} has not been proposed (`leadflow policy propose FILE`)")
    running = registry.state(name)
    source = registry.by_sha(running.sha) if running is not None else found
    if source is None:  # never so on a database leadflow keeps; refused rather than guessed
        raise NotFound(f"{name}: the version that runs (sha256 {running.sha[:12] if running else '?'}) "
                       "is not in the registry, so nobody can be known as its owner")
    owners = load_policy_bytes(source.text, source.file).policy.owners
    return {"marketing": owners.marketing, "sales": owners.sales}


def _approvals(a: Approvals) -> dict[str, list[str]]:
    return {"marketing": list(a.marketing), "sales": list(a.sales)}
