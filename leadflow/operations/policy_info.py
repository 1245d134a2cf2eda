"""Policies as people see them: the versions loaded, and a check of a file's text."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from activities.policies import NoPolicy, PolicyStore
from rules.validate import PolicyInvalid, load_policy_bytes, unserved_queues


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
    return checked(text, name)[0]


def checked(text: bytes, name: str = "policy.yaml", queues: Iterable[str] | None = None,
            roster: str = "the roster") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The problems of a policy file's text, and its warnings: with `queues` (those the roster's
    reps work), each routing rule whose queue nobody works."""
    try:
        loaded = load_policy_bytes(text, name)
    except PolicyInvalid as err:
        return [{"line": p.line, "rule": p.rule, "message": p.message} for p in err.problems], []
    if queues is None:
        return [], []
    return [], [{"line": w.line, "rule": w.rule, "message": w.message}
                for w in unserved_queues(loaded, queues, roster)]


def unworked_queues(store: PolicyStore, queues: Iterable[str], roster: str = "the roster"
                    ) -> list[dict[str, Any]]:
    """The active version's routing rules whose queue no rep of the roster works (said when the
    roster changes: a hand-off routed there would wait where nobody reads it)."""
    try:
        active = store.active()
    except NoPolicy:
        return []
    return [{"policy": active.name, "version": active.version, **w}
            for w in checked(active.source, active.file, queues, roster)[1]]
