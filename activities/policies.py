"""Which compiled policy versions a worker may use. A file that fails validation never becomes
active: the store keeps the last good version and logs why, file by file."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from activities.evaluation import Catalog
from delivery.content import ContentStore, check_policy_content, profile_fields
from delivery.watched import Watched, log_notes
from rules.compile import CompiledPolicy, compile_policy
from rules.validate import PolicyInvalid, load_policy_file

log = logging.getLogger("leadflow.policies")


class NoPolicy(LookupError):
    pass


class PolicyStore:
    def __init__(self, directory: str | Path, name: str = "lead-lifecycle",
                 content_dir: str | Path | None = None) -> None:
        self.directory = Path(directory)
        self.name = name
        # a policy whose sends have no (good) template here is refused like a broken file
        self.content = ContentStore(content_dir or self.directory.resolve().parent / "content")
        self._versions: dict[int, CompiledPolicy] = {}
        self._watched = Watched()
        self._lock = threading.Lock()

    def reload(self) -> list[str]:
        """Look at the policy files again; returns what changed, for the log."""
        notes: list[str] = []
        files = sorted(self.directory.glob("*.yaml")) + sorted(self.directory.glob("*.yml"))
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
        with self._lock:
            newest = self._versions[max(self._versions)] if self._versions else None
        # templates are checked against what the active policy's leads may have
        self.content.reload(profile_fields(newest.policy) if newest else None)
        log_notes(log, notes)
        return notes

    def active(self) -> CompiledPolicy:
        with self._lock:
            if not self._versions:
                raise NoPolicy(f"no valid version of policy {self.name!r} in {self.directory}")
            return self._versions[max(self._versions)]

    def versions(self) -> list[CompiledPolicy]:
        """Every valid version loaded, oldest first."""
        with self._lock:
            return [self._versions[v] for v in sorted(self._versions)]

    def get(self, version: int) -> CompiledPolicy | None:
        with self._lock:
            return self._versions.get(version)

    def catalog(self, pinned: int | None) -> Catalog:
        """The versions a lead pinned to `pinned` may meet now (Catalog.choose picks)."""
        return Catalog(self.active(), self.get(pinned) if pinned is not None else None)
