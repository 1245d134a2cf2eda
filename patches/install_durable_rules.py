"""Install durable-rules 2.0.28, the rules engine, into the interpreter that runs this script.

Its last release (2020) ships only a source package, compiled at install. Its C extension calls
PyEval_CallObject, which Python 3.13 removed, so on 3.13 it builds but fails to import
("undefined symbol: PyEval_CallObject"). Before 3.13 it is installed as published. From 3.13
on, the source package is downloaded from PyPI, durable-rules-2.0.28-python3.13.patch (beside
this file) is applied, and the patched source is installed: the same engine, with the five calls
renamed. `make up` and `make test` run this before installing leadflow.

    python patches/install_durable_rules.py
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "2.0.28"
PATCH = Path(__file__).resolve().parent / f"durable-rules-{VERSION}-python3.13.patch"


def installed() -> bool:
    """durable-rules of this version is installed and its engine imports."""
    check = ("import importlib.metadata as m, durable_rules_engine; "
             f"assert m.version('durable-rules') == '{VERSION}'")
    return subprocess.run([sys.executable, "-c", check], capture_output=True).returncode == 0


def main() -> int:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    if installed():
        return 0
    if sys.version_info < (3, 13):
        subprocess.run([*pip, "install", "--quiet", f"durable-rules=={VERSION}"], check=True)
        return 0
    print(f"durable-rules {VERSION} on Python {sys.version_info.major}.{sys.version_info.minor}: "
          f"installing it from source with {PATCH.name}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([*pip, "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        f"durable-rules=={VERSION}", "--dest", tmp], check=True)
        (sdist,) = Path(tmp).glob(f"durable*{VERSION}.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        (source,) = (p for p in Path(tmp).iterdir() if p.is_dir())
        # the source lies outside any git repository, so git apply patches the files as they are
        subprocess.run(["git", "apply", "--verbose", str(PATCH)], cwd=source, check=True)
        subprocess.run([*pip, "install", "--quiet", str(source)], check=True)
    if not installed():
        print("durable-rules was installed but its engine does not import", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
