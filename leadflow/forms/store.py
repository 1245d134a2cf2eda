"""The forms the API serves: every forms_dir/*.yaml, read at the first request and read again
when a file changes (a stat of the folder per request, at most once a second: cheaper than a
watcher task, and every API process sees an edit within a second). A file that stops checking
keeps its last good form served and says why in the log, as a policy file does."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from leadflow.forms.model import Form
from leadflow.forms.validate import FORM_NAME, FormInvalid, form_name, load_form_file

log = logging.getLogger("leadflow.forms")
RECHECK_SECONDS = 1.0


class FormStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._forms: dict[str, Form] = {}
        self._stamps: dict[Path, tuple[float, int]] = {}
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def get(self, name: str) -> Form | None:
        if not FORM_NAME.match(name):
            return None
        self.refresh()
        return self._forms.get(name)

    def names(self) -> list[str]:
        self.refresh()
        return sorted(self._forms)

    def refresh(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._checked < RECHECK_SECONDS:
                return
            self._checked = now
            stamps = {}
            for path in sorted(self.folder.glob("*.y*ml")):
                try:
                    st = path.stat()
                except OSError:  # removed between the listing and the stat
                    continue
                stamps[path] = (st.st_mtime, st.st_size)
            if stamps == self._stamps:
                return
            for path in set(self._stamps) - set(stamps):
                self._forms.pop(form_name(path), None)
            for path, stamp in stamps.items():
                if self._stamps.get(path) != stamp:
                    self._load(path)
            self._stamps = stamps

    def _load(self, path: Path) -> None:
        try:
            form = load_form_file(path)
        except FormInvalid as err:
            kept = "the last good one is served" if form_name(path) in self._forms else "not served"
            log.warning("form %s refused (%s):\n%s", path, kept, err)
            return
        self._forms[form.name] = form
