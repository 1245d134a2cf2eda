"""Which compiled policy versions a worker may use.

With a registry (governance.registry: the shared database), the database decides: the active
version, how running leads take it (move or pin) and the version in shadow, each compiled from
the text kept under its content hash, so every worker on every machine evaluates the same one.
A database that never had the policy active takes the shipped files on first start.

Without one (tests, tools that read files), the newest valid file in the folder is active. Either
way a version that fails validation never becomes active: the last good one stays, and the log
says why."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from activities.evaluation import Catalog
from leadflow.delivery.content import ContentStore, check_policy_content, profile_fields
from leadflow.delivery.watched import Watched, log_notes
from leadflow.governance.registry import rollout_of
from leadflow.routing.roster import is_roster
from rules.compile import CompiledPolicy, compile_policy
from rules.validate import PolicyInvalid, load_policy_bytes, load_policy_file

if TYPE_CHECKING:
    from leadflow.governance.registry import Registry

log = logging.getLogger("leadflow.policies")


class NoPolicy(LookupError):
    pass


class PolicyStore:
    def __init__(self, directory: str | Path, name: str = "lead-lifecycle",
                 content_dir: str | Path | None = None, registry: Registry | None = None) -> None:
        self.directory = Path(directory)
        self.name = name
        self.registry = registry
        # a policy whose sends have no (good) template here is refused like a broken file
        self.content = ContentStore(content_dir or self.directory.resolve().parent / "content")
        self._versions: dict[int, CompiledPolicy] = {}
        self._by_sha: dict[str, CompiledPolicy] = {}
        self._refused: set[str] = set()  # shas that did not compile here (said once)
        self._templates = ""
        self._active: CompiledPolicy | None = None
        self._rollout: str = ""  # "" (the file's own) | move | pin
        self._shadow: CompiledPolicy | None = None
        self._watched = Watched()
        self._lock = threading.Lock()

    def reload(self) -> list[str]:
        """Look at the policy files (or the database) again; returns what changed, for the log."""
        notes: list[str] = []
        if self.registry is None:
            self._reload_files(notes)
            with self._lock:
                self._active = self._versions[max(self._versions)] if self._versions else None
        else:
            self._reload_registry(notes)
        with self._lock:
            active = self._active
        # templates are checked against what the active policy's leads may have
        self.content.reload(profile_fields(active.policy) if active else None)
        log_notes(log, notes)
        return notes

    def _reload_files(self, notes: list[str]) -> None:
        files = [path for path in sorted(self.directory.glob("*.yaml")) + sorted(self.directory.glob("*.yml"))
                 if not is_roster(path)]
        templates = self.content.digest()  # a changed template has every policy checked again
        for path in files:
            if not self._watched.changed(path, templates, notes, "kept the last good versions"):
                continue
            try:
                loaded = load_policy_file(path)
                if problems := check_policy_content(loaded, self.content.directory):
                    raise PolicyInvalid(problems)
                compiled = compile_policy(loaded)
            except PolicyInvalid as err:
                notes.append(f"{path}: refused, the last good version stays active:\n  "
                             + "\n  ".join(str(p) for p in err.problems))
                continue
            if compiled.name != self.name:
                continue
            with self._lock:
                old = self._versions.get(compiled.version)
                self._versions[compiled.version] = compiled
            if old is not None and old.sha != compiled.sha:
                notes.append(f"{path}: v{compiled.version} changed in place (prefer a new version)")
            else:
                notes.append(f"{path}: v{compiled.version} loaded as {compiled.ruleset}")

    def _reload_registry(self, notes: list[str]) -> None:
        assert self.registry is not None
        templates = self.content.digest()
        if templates != self._templates:  # a template fixed since: a refused text may load now
            self._refused.clear()
            self._templates = templates
        state = self.registry.state(self.name)
        if state is None:  # a fresh database: the shipped files, recorded as the first start
            self._reload_files(notes)
            with self._lock:
                shipped = list(self._versions.values())
                self._versions.clear()
            state = self.registry.first_start(self.name, shipped)
            if state is None:
                return
            notes.append(f"first start: {self.name} v{state.version} activated from the shipped files")
        # every version kept (a lead may be pinned to any that was active, a shadow to any proposed)
        for version in self.registry.versions(self.name):
            self._compiled(version.sha, version.file, version.text, notes)
        with self._lock:
            shadow = self._by_sha.get(state.shadow_sha) if state.shadow_sha else None
            active = self._by_sha.get(state.sha)
            if active is None:
                stays = f"v{self._active.version} stays" if self._active else "nothing to evaluate with"
                notes.append(f"{self.name} v{state.version} is active in the database but does not load "
                             f"here; {stays}")
            elif self._active is None or self._active.sha != active.sha or self._rollout != state.rollout:
                notes.append(f"{self.name} v{active.version} active (sha256 {active.sha[:12]}, "
                             f"rollout {state.rollout})")
                self._active, self._rollout = active, state.rollout
            if (shadow.sha if shadow else None) != (self._shadow.sha if self._shadow else None):
                notes.append(f"{self.name} v{shadow.version} runs in shadow" if shadow else "no shadow run")
            self._shadow = shadow

    def _compiled(self, sha: str, file: str, text: bytes, notes: list[str]) -> CompiledPolicy | None:
        with self._lock:
            known = self._by_sha.get(sha)
        if known is not None or sha in self._refused:
            return known
        try:
            loaded = load_policy_bytes(text, file)
            if problems := check_policy_content(loaded, self.content.directory):
                raise PolicyInvalid(problems)
            compiled = compile_policy(loaded)
        except PolicyInvalid as err:
            self._refused.add(sha)
            notes.append(f"{file} (sha256 {sha[:12]}) does not load here:\n  "
                         + "\n  ".join(str(p) for p in err.problems))
            return None
        with self._lock:
            self._by_sha[sha] = compiled
            if compiled.name == self.name:
                self._versions[compiled.version] = compiled
        return compiled

    def active(self) -> CompiledPolicy:
        with self._lock:
            if self._active is None:
                where = "the database" if self.registry is not None else str(self.directory)
                raise NoPolicy(f"no valid version of policy {self.name!r} in {where}")
            return self._active

    def rollout(self) -> str:
        """How running leads take the active version: move or pin (the activation's word, else
        the file's own)."""
        active = self.active()
        with self._lock:
            if self._rollout:
                return self._rollout
        return rollout_of(active.policy)

    def shadow(self) -> CompiledPolicy | None:
        with self._lock:
            return self._shadow

    def versions(self) -> list[CompiledPolicy]:
        """Every valid version loaded, oldest first."""
        with self._lock:
            return [self._versions[v] for v in sorted(self._versions)]

    def get(self, version: int) -> CompiledPolicy | None:
        with self._lock:
            return self._versions.get(version)

    def catalog(self, pinned: int | None) -> Catalog:
        """The versions a lead pinned to `pinned` may meet now (Catalog.choose picks)."""
        return Catalog(self.active(), self.get(pinned) if pinned is not None else None, self.rollout())
