"""A real PostgreSQL server for the tests, started once per test session; each user gets a
database of its own (`new_database()`, a SQLAlchemy URL that leadflow.db.database opens with psycopg).

Where the server comes from:

- `pgserver` (its wheel ships the server's binaries), where it is importable: Python 3.10 to
  3.12 with `make test`'s dev extras. pgserver has no wheel for Python 3.13.
- otherwise the `postgresql` package of Debian or Ubuntu (initdb and pg_ctl under
  /usr/lib/postgresql/<version>/bin; or on PATH, as Fedora's `postgresql-server` puts them).
  Where they are missing and the tests run as root with apt-get, the first test that needs
  PostgreSQL installs them (`apt-get update`, `apt-get install -y postgresql`); otherwise those
  tests are skipped with what to install. The server runs from a temporary directory: trust
  authentication, no TCP port, its socket in that directory, stopped and removed at exit.
  initdb refuses to run as root, so as root the server runs as the `postgres` user the package
  creates (else `nobody`), and the temporary directory is theirs.

LEADFLOW_TEST_PG=pgserver or LEADFLOW_TEST_PG=debian forces one of the two (debian: the system's
binaries, installed as above where missing; a failure is then an error, not a skip). Unset or
`auto`: pgserver where importable, else debian.
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

_server: Any = None
_failed: str | None = None
_lock = threading.Lock()

INSTALL_HINT = ("install PostgreSQL's server binaries: `apt-get install postgresql` (Debian, Ubuntu), "
                "`dnf install postgresql-server` (Fedora), or `pip install pgserver` (Python < 3.13)")


def choice() -> str:
    wanted = os.environ.get("LEADFLOW_TEST_PG", "auto").strip().lower() or "auto"
    if wanted not in ("auto", "pgserver", "debian"):
        raise RuntimeError(f"LEADFLOW_TEST_PG={wanted!r}: expected pgserver, debian or auto")
    if wanted == "auto":
        return "pgserver" if importlib.util.find_spec("pgserver") else "debian"
    return wanted


def server() -> Any:
    """The session's server, started on first use: a PgServer or a _SystemServer."""
    global _server, _failed
    with _lock:
        if _server is None:
            if _failed is not None:
                _unavailable(_failed)
            kind = choice()
            if kind == "pgserver":
                _server = _start_pgserver()
            else:
                try:
                    _server = _SystemServer.start()
                except _NoPostgres as e:
                    _failed = str(e)
                    _unavailable(_failed)
        return _server


def new_database() -> str:
    """A fresh, empty database; its SQLAlchemy URL."""
    srv = server()
    name = f"t_{uuid.uuid4().hex[:12]}"
    srv.psql(f"CREATE DATABASE {name};")
    base = srv.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
    head, _, query = base.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}?{query}"


def _start_pgserver() -> Any:
    if "XDG_RUNTIME_DIR" not in os.environ:  # pgserver's platformdirs asks for one on import
        runtime = tempfile.mkdtemp(prefix="leadflow-pg-run-")
        os.environ["XDG_RUNTIME_DIR"] = runtime
        atexit.register(shutil.rmtree, runtime, ignore_errors=True)
    import pgserver

    folder = tempfile.mkdtemp(prefix="leadflow-pg-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # runs after the stop below
    srv = pgserver.get_server(folder, cleanup_mode="stop")
    atexit.register(srv.cleanup)
    for sql in WAL_SETTINGS:
        srv.psql(sql)
    return srv


# An erasure's bytes leave the log's files at a checkpoint only when old segments are removed, not
# recycled (docs/people.md#postgresql asks the same of a server that erases people)
WAL_SETTINGS = ("ALTER SYSTEM SET wal_recycle = off;", "SELECT pg_reload_conf();")


def data_directory() -> Path:
    """The server's files (its data directory), for the tests that read what is on disk."""
    srv = server()
    return Path(srv.pgdata) if hasattr(srv, "pgdata") else Path(srv.data)


class _NoPostgres(Exception):
    """No PostgreSQL server binaries, and they could not be installed here."""


def _unavailable(why: str) -> None:
    if os.environ.get("LEADFLOW_TEST_PG", "").strip().lower() == "debian":
        raise RuntimeError(why)
    import pytest

    pytest.skip(why)


def _binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, or PATH's."""
    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.parent.name
        return tuple(int(p) for p in part.split(".") if p.isdigit())

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    for initdb in found:
        if (Path(initdb).parent / "pg_ctl").exists():
            return Path(initdb).parent
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    return None


def _install() -> Path:
    """Debian's postgresql package installed with apt-get, as root; its binaries' directory."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        who = "not root" if os.geteuid() != 0 else "no apt-get"
        raise _NoPostgres(f"no PostgreSQL server for the tests ({who}, so it was not installed): "
                          + INSTALL_HINT)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    for step in (["apt-get", "update", "-q"], install):
        done = subprocess.run(step, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise _NoPostgres(f"no PostgreSQL server for the tests: `{' '.join(step)}` failed "
                              f"(exit {done.returncode}):\n{tail}\n" + INSTALL_HINT)
    binaries = _binaries()
    if binaries is None:
        raise _NoPostgres("apt-get installed postgresql but no initdb/pg_ctl under "
                          "/usr/lib/postgresql/*/bin: " + INSTALL_HINT)
    return binaries


class _SystemServer:
    """The system's PostgreSQL binaries, running a cluster in a temporary directory; the same
    psql/get_uri/cleanup as pgserver's server, for new_database()."""

    PORT = 5432  # only names the socket file: the server listens on no TCP address

    def __init__(self, binaries: Path, folder: Path, user: pwd.struct_passwd | None) -> None:
        self.binaries, self.folder, self.user = binaries, folder, user
        self.data = folder / "data"
        self.owner_pid = os.getpid()

    @classmethod
    def start(cls) -> _SystemServer:
        binaries = _binaries() or _install()
        user = None
        if os.geteuid() == 0:  # initdb will not run as root
            for name in ("postgres", "nobody"):
                try:
                    user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            else:
                raise _NoPostgres("running as root and there is no `postgres` (or `nobody`) user "
                                  "to run PostgreSQL as")
        folder = Path(tempfile.mkdtemp(prefix="leadflow-pg-"))
        if user is not None:
            os.chown(folder, user.pw_uid, user.pw_gid)
        srv = cls(binaries, folder, user)
        atexit.register(srv.cleanup)
        srv._run("initdb", "-D", str(srv.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                 "--no-sync", "--no-instructions")
        with open(srv.data / "postgresql.conf", "a") as conf:
            conf.write(f"\n# leadflow's tests (tests/support/pg.py)\nlisten_addresses = ''\n"
                       f"port = {cls.PORT}\n"
                       f"unix_socket_directories = '{folder}'\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\nwal_recycle = off\n")
        srv._run("pg_ctl", "-D", str(srv.data), "-l", str(folder / "server.log"), "-w", "-t", "60", "start")
        return srv

    def _run(self, program: str, *args: str) -> None:
        user = self.user
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {"PATH": f"{self.binaries}:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": str(self.folder), "TZ": "UTC"}
        done = subprocess.run([str(self.binaries / program), *args], cwd=self.folder, env=env,
                              capture_output=True, text=True, timeout=120, **kwargs)
        if done.returncode != 0:
            log = self.folder / "server.log"
            extra = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed (exit {done.returncode}):\n"
                               f"{done.stdout}{done.stderr}{extra}")

    def get_uri(self) -> str:
        return f"postgresql://postgres:@/postgres?host={self.folder}&port={self.PORT}"

    def psql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.folder), port=self.PORT, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]  # built from a uuid

    def cleanup(self) -> None:
        if os.getpid() != self.owner_pid:  # a forked child leaves the server to its parent
            return
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
