"""The shell examples of README.md and docs/*.md run, and their relative links lead somewhere.

Every fenced ```sh, ```bash or ```console block is run (a console block: its `$ ` lines) unless
the line just before it is `<!-- docs-test: skip (why) -->`: that marks a block that needs a
running stack (`make up`), the network, or minutes (a bench). A block runs with `bash -e -o
pipefail`, so any command in it that fails fails the test, and the block's output is shown.

Each document runs in a workspace of its own: a temporary copy of what the examples read
(`policies/`, `content/`, `examples/`, and `.venv` linked to this interpreter's environment),
with LEADFLOW_HOME a temporary folder, no other LEADFLOW_* or TEMPORAL_* setting, and the venv's
bin first on PATH. Its database is as `make up`'s first start leaves it: the shipped
`lead-lifecycle` v1 active (here proposed, approved by its two owners and activated with the
CLI). The workspace also holds the change the README asks the reader to make,
`policies/lead-lifecycle.v2.yaml`: v1 with `version: 2` and a lower fit threshold, whose own
tests still pass. The blocks of one document run in order in the same workspace, so a later
block may read what an earlier one wrote (a generated `history.jsonl`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def _root() -> Path:
    here = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        if (folder / "README.md").is_file() and (folder / "pyproject.toml").is_file():
            return folder
    raise RuntimeError("no repository root above " + str(here))


ROOT = _root()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = {"sh", "bash", "console"}
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<why>[^)]+)\)\s*-->")
COPIED = ("policies", "content", "examples", "forms")  # what the examples read, copied into a workspace
BLOCK_TIMEOUT = 120  # seconds; the whole file takes well under 30 s on a quiet 2-core machine


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None  # why, when marked

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    def script(self) -> str:
        if self.lang != "console":
            return self.text
        lines, more = [], False
        for line in self.text.splitlines():
            if more or line.startswith("$ "):
                lines.append(line if more else line[2:])
                more = line.endswith("\\")
        return "\n".join(lines)


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, shell or not (the link check reads the others)."""
    found: list[Block] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)", lines[i])
        if not opening:
            i += 1
            continue
        fence, start = opening["fence"], i
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            j += 1
        before = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marked = SKIP.search(before)
        found.append(Block(doc, start + 1, opening["lang"].lower(), "\n".join(lines[start + 1:j]),
                           marked["why"] if marked else None))
        i = j + 1
    return found


def shell_blocks() -> list[Block]:
    return [b for doc in DOCS for b in blocks(doc) if b.lang in SHELLS]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADFLOW_", "TEMPORAL_", "OTEL_"))}
    env["LEADFLOW_HOME"] = str(home)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["COLUMNS"] = "120"
    return env


def _run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT)


@pytest.fixture(scope="module")
def after_first_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace as `make up` leaves the repository: v1 active in the database, and the
    reader's v2 beside it in policies/."""
    base = tmp_path_factory.mktemp("docs-workspace")
    work, home = base / "work", base / "home"
    work.mkdir()
    home.mkdir()
    for name in COPIED:
        shutil.copytree(ROOT / name, work / name)
    (work / ".venv").symlink_to(Path(sys.prefix))
    setup = """
        leadflow policy propose policies/lead-lifecycle.v1.yaml --as docs-test
        leadflow policy approve lead-lifecycle 1 --as marketing-ops@example.com
        leadflow policy approve lead-lifecycle 1 --as sales-ops@example.com
        leadflow policy activate lead-lifecycle 1
    """
    done = _run(setup, work, _env(home))
    assert done.returncode == 0, done.stdout + done.stderr
    v1 = (work / "policies" / "lead-lifecycle.v1.yaml").read_text(encoding="utf-8")
    v2 = v1.replace("version: 1\n", "version: 2\n", 1).replace("score.fit: {gte: 50}", "score.fit: {gte: 40}")
    assert v2 != v1 and "version: 2\n" in v2 and "score.fit: {gte: 40}" in v2, \
        "the v2 the docs' workspace makes no longer applies to policies/lead-lifecycle.v1.yaml"
    (work / "policies" / "lead-lifecycle.v2.yaml").write_text(v2, encoding="utf-8")
    return base


def _workspace(template: Path, into: Path) -> tuple[Path, Path]:
    shutil.copytree(template, into, symlinks=True)
    return into / "work", into / "home"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_the_shell_examples_run(doc: Path, after_first_start: Path, tmp_path: Path) -> None:
    mine = [b for b in blocks(doc) if b.lang in SHELLS]
    runnable = [b for b in mine if b.skip is None]
    if not runnable:
        pytest.skip(f"{len(mine)} shell block(s), each marked skip" if mine else "no shell block")
    work, home = _workspace(after_first_start, tmp_path / "ws")
    env = _env(home)
    for block in runnable:
        script = block.script()
        # `set -e` does not stop at a failing command on the left of && or ||: write such a
        # pair as two lines, so a documented command that fails fails here
        assert not re.search(r"(&&|\|\|)", script), f"{block.where}: && or || hides a failure from the test"
        started = time.monotonic()
        done = _run(script, work, env)
        took = time.monotonic() - started
        assert done.returncode == 0, (
            f"{block.where}: the example exited {done.returncode} after {took:.1f} s\n"
            f"--- block\n{script}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}")


def test_every_shell_block_is_run_or_says_why_not() -> None:
    found = shell_blocks()
    assert found, "no shell block in README.md or docs/*.md"
    for block in found:
        assert block.skip is None or block.skip.strip(), f"{block.where}: a skip says why"


# -- links ------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(doc: Path) -> str:
    """The document without its fenced blocks and inline code, where a link is not a link."""
    text = doc.read_text(encoding="utf-8")
    text = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "``", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    text = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", doc.read_text(encoding="utf-8"), flags=re.S | re.M)
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        slug = _slug(match[1])
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_relative_links_lead_to_a_file_and_a_heading(doc: Path) -> None:
    broken = []
    for match in LINK.finditer(_prose(doc)):
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}:\n  " + "\n  ".join(broken)
