"""Files a worker looks at again and again (policies, templates): which changed since the last
look, and the notes for the log."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path


class Watched:
    def __init__(self) -> None:
        self._seen: dict[Path, str] = {}  # file -> sha of the bytes last looked at, and the salt

    def changed(self, path: Path, salt: str, notes: list[str], kept: str) -> bool:
        """Whether `path` (or `salt`: what else it is checked against) changed since the last
        look; an unreadable file is noted and counts as unchanged (`kept` says what stays)."""
        try:
            sha = hashlib.sha256(path.read_bytes()).hexdigest() + salt
        except OSError as err:
            notes.append(f"{path}: unreadable ({err}); {kept}")
            return False
        if self._seen.get(path) == sha:
            return False
        self._seen[path] = sha
        return True


def log_notes(log: logging.Logger, notes: list[str]) -> None:
    for note in notes:
        (log.warning if "refused" in note or "unreadable" in note else log.info)(note)
