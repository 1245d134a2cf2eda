"""Policies as people see them: the versions loaded, and a check of a file's text."""

from __future__ import annotations

from typing import Any

from activities.policies import NoPolicy, PolicyStore
from rules.validate import PolicyInvalid, load_policy_bytes


def versions(store: PolicyStore) -> list[dict[str, Any]]:
    """Each valid version with its owners, content hash and whether it is the active one."""
    loaded = store.versions()
    try:
        active, rollout = store.active().sha, store.rollout()
    except NoPolicy:
        active, rollout = None, None
    shadow = store.shadow()
    return [{"policy": p.name, "version": p.version, "file": p.file, "sha256": p.sha,
             "ruleset": p.ruleset, "owners": p.policy.owners.model_dump(), "active": p.sha == active,
             "shadow": shadow is not None and p.sha == shadow.sha, "rules": len(p.rules),
             "rollout": rollout if p.sha == active else p.policy.rollout.running_leads}
            for p in loaded]


def validate(text: bytes, name: str = "policy.yaml") -> list[dict[str, Any]]:
    """The problems of a policy file's text, as `leadflow policy validate` reports them."""
    try:
        load_policy_bytes(text, name)
    except PolicyInvalid as err:
        return [{"line": p.line, "rule": p.rule, "message": p.message} for p in err.problems]
    return []
