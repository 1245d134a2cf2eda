"""The shared database: deliveries, suppressions, link hits, the event archive, endings, aliases,
policy versions and the roster's state, shared by every worker and API process.

SQLite under .leadflow/ is the embedded default; LEADFLOW_DATABASE_URL names PostgreSQL (or
any database SQLAlchemy speaks) for workers on several machines. Alembic migrates the schema
when anything opens it.

Exactly-once as far as it goes: an attempt *claims* the delivery's key before it sends and
*marks* it after. A retried activity finds the mark and sends nothing; a second attempt while the
first still holds its lease waits (it is retried later). The one window left: an attempt that
sent and died before marking. Its lease runs out, the next attempt takes the claim over
(`reclaims` counts it) and sends again. Receivers can drop that repeat: the Message-ID and the
Idempotency-Key are the same on both."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    String,
    and_,
    bindparam,
    case,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from leadflow.db.schema import ATTENTION, deliveries, key_checks, link_hits, suppressions
from leadflow.delivery.webhook import masked

if TYPE_CHECKING:
    from leadflow.settings import Settings

CONNECT_TIMEOUT = 5  # seconds to reach a PostgreSQL server
POOL_TIMEOUT = 10  # seconds to wait for a pooled connection
HOT = 8  # PostgreSQL: autocommit connections a process keeps for claim, mark and the suppression check

log = logging.getLogger("leadflow.ledger")

FINAL = ("sent", "failed", "bounced", "suppressed", "skipped")
STATUSES = ("sending", "retrying", *FINAL)


PSEUDONYM_USE = "addresses"  # Settings.key_for(use): the key of the addresses the database keeps
CHECK_TEXT = "leadflow/key-check"  # what key_checks keeps the keyed hash of
NO_SECRET = ("LEADFLOW_SECRET is not set: the shared database keeps addresses (the suppression list) "
             "keyed with it; give every process the same secret")


def address_hash(address: str) -> str:
    """The address's SHA-256: what a signed link carries (an unsubscribe, a confirmation). Never
    stored as it is: anyone holding the database could hash a list of addresses and match it.
    The database keeps Database.pseudonym of it."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """`claimed`: send now. `busy`: another attempt holds it. Else the row is final (`status`)."""

    outcome: Literal["claimed", "busy", "final"]
    status: str
    detail: str = ""
    message_id: str = ""
    reclaimed: bool = False


class Database:
    def __init__(self, url: str, keys: Sequence[str] = ()) -> None:
        """`keys`: Settings.keys_for(PSEUDONYM_USE), the current key first; none given, they are
        read from the environment when first needed."""
        self.url = make_url(url)
        self._keys = tuple(keys)
        self._keyless = False  # Database.of without LEADFLOW_SECRET: an address is never looked up
        self.engine = _engine(url)
        # SQLite takes one writer at a time; a writer that finds the file locked sleeps in its busy
        # handler (1 ms, 2 ms, 5 ms ...). Threads of one process queue on a lock instead.
        self._lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        # SQLite: the hot path (claim, mark) runs on one driver connection of this process's own,
        # in turns; its page cache stays warm, where a connection per thread rereads the pages
        # every other connection's commit changed
        self._conn: Any = None
        # PostgreSQL (psycopg): the same statements on autocommit driver connections of this
        # process's own, idle ones here (Database._hot_run)
        self._hot: list[Any] | None = [] if self.engine.dialect.driver == "psycopg" else None
        self._hot_made = 0
        self._hot_lock = threading.Lock()
        self._stop = threading.Event()
        if self.engine.dialect.name == "sqlite" and self.url.database not in (None, "", ":memory:"):
            threading.Thread(target=self._checkpoints, name="ledger-checkpoint", daemon=True).start()
        # The three statements of every delivery, compiled once and run on the driver: building
        # and running a Core statement cost 0.2 to 0.6 ms each, the driver alone under 0.1
        c = deliveries.c
        self._claim_new = _Prepared(self.engine, self._insert(deliveries).values(
            {col: bindparam(col) for col in ("key", "kind", "lead", "target", "subject", "status", "attempts",
                                             "claimed_by", "lease_until", "message_id", "created_at",
                                             "updated_at")}).on_conflict_do_nothing(index_elements=["key"])
            .returning(c.key))
        self._mark = _Prepared(self.engine, update(deliveries).where(c.key == bindparam("k")).values(
            status=bindparam("status"), detail=bindparam("detail"), updated_at=bindparam("now"),
            lease_until=bindparam("zero"),
            sent_at=case((bindparam("sent", type_=Boolean), bindparam("now")), else_=c.sent_at),
            message_id=func.coalesce(bindparam("mid", type_=String), c.message_id)))
        self._by_address: tuple[_Prepared, _Prepared] | None = None  # Database._address_statements
        self._link_sweep_at = 0.0  # when count_link_hit next clears the windows that are over

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """This process's turn to write. Never more than a few seconds' wait: Temporal cancels a
        sync activity by raising in its thread, which can leave the lock taken with nobody to
        release it, and a worker must not stop delivering for that (SQLite's busy handler still
        keeps writers apart)."""
        got = self._lock.acquire(timeout=5) if self._lock is not None else False
        try:
            yield
        finally:
            if got:
                self._lock.release()  # type: ignore[union-attr]

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._turn(), self.engine.begin() as db:
            yield db

    def writing(self) -> contextlib.AbstractContextManager[Connection]:
        """A transaction in this process's write turn, for the other tables of the shared
        database (the event archive): SQLite's writers then queue here, not in its busy handler."""
        return self._write()

    def insert(self, table: Any) -> Any:
        """INSERT for the database's dialect (with on_conflict_do_nothing)."""
        return self._insert(table)

    @contextlib.contextmanager
    def _driver(self) -> Iterator[Any]:
        """A pooled driver connection in a transaction of its own, for the prepared statements."""
        conn = self.engine.raw_connection()
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def _run(self, prepared: _Prepared, values: dict[str, Any]) -> list[Any]:
        """One prepared statement as a transaction of its own; its RETURNING or SELECT rows.

        SQLite: in autocommit, so the statement and its commit are one call into the driver,
        made without the GIL. Each Python step inside the write turn is one the other threads
        queue behind: with a checkout from the pool, a cursor and a separate commit, eight
        delivering threads spent more time queuing than writing."""
        if self._lock is None:
            if self._hot is not None:
                return self._hot_run(prepared, values)
            with self._driver() as conn:
                return prepared.run(conn, values)
        params = prepared.params(values)
        with self._turn():
            if self._conn is None:
                self._conn = self._own()
            return self._conn.execute(prepared.sql, params).fetchall()  # type: ignore[no-any-return]

    def _hot_run(self, prepared: _Prepared, values: dict[str, Any]) -> list[Any]:
        """PostgreSQL: the statement on an autocommit connection kept for it, one round trip,
        where a pooled connection costs a ping, a BEGIN and a COMMIT besides (a claim 630 µs and
        180 µs of CPU here, 230 and 50 this way; a mark 700 and 175, 50 and 20). At most HOT of
        them: more statements at once go through the pool. A connection that broke (the server
        restarted, say) is dropped and the statement goes through the pool once more, which
        pings first: each of the three is safe to repeat (a claim that did commit finds its own
        row, `sending`, and the attempt waits for its lease as for any busy claim)."""
        conn, make = None, False
        with self._hot_lock:
            if self._hot:
                conn = self._hot.pop()
            elif self._hot is not None and self._hot_made < HOT:
                self._hot_made += 1
                make = True
        if make:
            try:
                conn = self._own()
            except BaseException:
                with self._hot_lock:
                    self._hot_made -= 1
                raise
        if conn is None:
            with self._driver() as pooled:
                return prepared.run(pooled, values)
        try:
            rows = prepared.run(conn, values)
        except Exception:
            if not (conn.closed or conn.broken):
                self._hot_give(conn)
                raise
            self._hot_drop(conn)
            with self._driver() as pooled:
                return prepared.run(pooled, values)
        self._hot_give(conn)
        return rows

    def _hot_give(self, conn: Any) -> None:
        with self._hot_lock:
            if self._hot is not None and not self._stop.is_set():
                self._hot.append(conn)
                return
        conn.close()

    def _hot_drop(self, conn: Any) -> None:
        with self._hot_lock:
            self._hot_made -= 1
        with contextlib.suppress(Exception):
            conn.close()

    def _own(self) -> Any:
        """A driver connection made by the engine (so with its pragmas), out of its pool, in
        autocommit."""
        proxy = self.engine.raw_connection()
        proxy.detach()
        conn: Any = proxy.dbapi_connection
        if self._lock is not None:  # sqlite3
            conn.isolation_level = None
        else:  # psycopg
            conn.autocommit = True
        return conn

    @property
    def keys(self) -> tuple[str, ...]:
        if not self._keys:
            from leadflow.settings import Settings, SettingsError  # the settings import this module

            if self._keyless:
                raise SettingsError(NO_SECRET)
            self._keys = Settings.from_env().keys_for(PSEUDONYM_USE)
        return self._keys

    def pseudonym(self, digest: str) -> str:
        """What the database keeps of an address (its address_hash): a keyed hash, which nobody
        without LEADFLOW_SECRET can match against a list of addresses."""
        return _keyed(self.keys[0], digest)

    def pseudonyms(self, digest: str) -> list[str]:
        """The same under every key still accepted (LEADFLOW_OLD_SECRETS): a suppression kept
        before a rotation still holds."""
        return [_keyed(key, digest) for key in self.keys]

    def _address_statements(self) -> tuple[_Prepared, _Prepared]:
        """The claim of an e-mail (a row, unless the address is on the suppression list: one
        statement) and the suppression check, with a slot per key."""
        if self._by_address is None:
            c = deliveries.c
            slots: list[Any] = [bindparam(f"h{i}", type_=String) for i in range(len(self.keys))]
            claim_cols = ("key", "kind", "lead", "target", "subject", "status", "attempts", "claimed_by",
                          "lease_until", "message_id", "created_at", "updated_at")
            kept = suppressions.c.address_hash.in_(slots)
            unless = select(*(bindparam(col, type_=deliveries.c[col].type) for col in claim_cols)).where(
                ~select(suppressions.c.address_hash).where(kept).exists())
            self._by_address = (
                _Prepared(self.engine, self._insert(deliveries).from_select(claim_cols, unless)
                          .on_conflict_do_nothing(index_elements=["key"]).returning(c.key)),
                _Prepared(self.engine, select(suppressions.c.reason).where(kept).order_by(suppressions.c.at)))
        return self._by_address

    def _slots(self, address: str) -> dict[str, str]:
        return {f"h{i}": h for i, h in enumerate(self.pseudonyms(address_hash(address)))}

    @classmethod
    def open(cls, url: str, keys: Sequence[str] = ()) -> Database:
        ledger = cls(url, keys)
        ledger.migrate()
        return ledger

    @classmethod
    def of(cls, settings: Settings) -> Database:
        """The shared database these settings name, opened with their keys: the one its addresses
        are kept under first (after a rotation, an old secret's), refused when it has none of
        them. Outside the embedded setup, without LEADFLOW_SECRET, whatever needs an address's key
        is refused (SettingsError): a key made on one machine would key what no other process
        can match."""
        from leadflow.settings import SettingsError

        if not settings.secret and not settings.embedded:
            # what needs no address (a report, a lead's page) works; what does is refused, and
            # so is a migration that must key what an earlier leadflow kept plain
            ledger = cls(settings.shared_db_url)
            ledger._keyless = True
            ledger.migrate()
            return ledger
        ledger = cls.open(settings.shared_db_url, settings.keys_for(PSEUDONYM_USE))
        try:
            ledger._settle_keys()
        except SettingsError:
            ledger.close()
            raise
        return ledger

    def _settle_keys(self) -> None:
        from leadflow.settings import SettingsError

        check = key_checks.c
        with self._write() as db:
            first = _keyed(self.keys[0], CHECK_TEXT)  # a new database: keyed with this key from now on
            db.execute(self._insert(key_checks).values(purpose=PSEUDONYM_USE, digest=first)
                       .on_conflict_do_nothing(index_elements=["purpose"]))
            kept = db.execute(select(check.digest).where(check.purpose == PSEUDONYM_USE)).scalar_one()
        matching = [key for key in self.keys if hmac.compare_digest(_keyed(key, CHECK_TEXT), kept)]
        if not matching:
            raise SettingsError("the shared database's addresses (the suppression list) are keyed with "
                                "another LEADFLOW_SECRET than this process has: give it the same secret, or "
                                "list the one in use in LEADFLOW_OLD_SECRETS")
        self._keys = (matching[0], *(key for key in self.keys if key != matching[0]))
        self._by_address = None

    def _checkpoints(self, every: float = 2.0) -> None:
        """Copy the write-ahead log back into the database now and then, without holding up
        anyone: a PASSIVE checkpoint takes what no reader still needs and waits for nobody."""
        while not self._stop.wait(every):
            try:
                with self.engine.connect() as db:
                    db.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception as err:  # the next round tries again; a log that grows is no failure
                log.debug("ledger checkpoint: %s", err)

    def close(self) -> None:
        self._stop.set()
        with self._turn():
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        with self._hot_lock:
            hot, self._hot = self._hot or [], None
        for idle in hot:
            with contextlib.suppress(Exception):
                idle.close()
        self.engine.dispose()

    def migrate(self) -> None:
        """Bring the schema to the newest migration; safe when several processes start at once."""
        with self._migration_lock() as connection:
            config = Config()
            config.set_main_option("script_location", str(resources.files("leadflow.db") / "migrations"))
            config.attributes["connection"] = connection
            # migration 0014 keys what was kept plain (asked only when there is some)
            config.attributes["pseudonym_key"] = lambda: self.keys[0]
            command.upgrade(config, "head")
            connection.commit()

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(7305220)"))  # any fixed number
                connection.commit()
                try:
                    yield connection
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(7305220)"))
                    connection.commit()
            return
        lock = Path(f"{self.url.database or 'memory'}.migrate-lock") if self.url.database else None
        with contextlib.ExitStack() as stack:
            if lock is not None:
                handle = stack.enter_context(open(lock, "a"))
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield stack.enter_context(self.engine.connect())

    # -- claim, send, mark -------------------------------------------------------------------

    def claim(self, key: str, *, kind: str, lead: str, target: str, subject: str, owner: str,
              lease: float, message_id: str = "", address: str | None = None,
              now: float | None = None) -> Claim:
        """With `address`, an address on the suppression list is never claimed: the delivery
        is recorded `suppressed` (unless it was sent already) and the Claim says so. A URL's
        login (`https://user:password@…`) is never written: ops read the target."""
        now = time.time() if now is None else now
        target = masked(target)
        c = deliveries.c
        values = {"key": key, "kind": kind, "lead": lead, "target": target, "subject": subject,
                  "status": "sending", "attempts": 1, "claimed_by": owner, "lease_until": now + lease,
                  "message_id": message_id, "created_at": now, "updated_at": now}
        # RETURNING, not rowcount: psycopg leaves rowcount at -1 after ON CONFLICT DO NOTHING
        if address is None:
            inserted = self._run(self._claim_new, values)
        else:
            inserted = self._run(self._address_statements()[0], {**values, **self._slots(address)})
        if inserted:
            return Claim("claimed", "sending", message_id=message_id)
        if address is not None and (reason := self.suppressed(address)):
            detail = f"the address is suppressed ({reason})"
            status = self.record(key, kind=kind, lead=lead, target=target, subject=subject,
                                 status="suppressed", detail=detail, now=now)
            if status not in ("sent", "suppressed"):  # an earlier attempt left it retrying: no more
                self.mark(key, "suppressed", detail, now=now)
            return Claim("final", "sent" if status == "sent" else "suppressed",
                         "" if status == "sent" else detail)
        with self._write() as db:  # known: a retry, a reclaim, or a delivery already settled
            expired = and_(c.status == "sending", c.lease_until < now)
            row = db.execute(select(c.status).where(c.key == key)).one()
            taken = db.execute(update(deliveries).where(
                c.key == key, or_(c.status == "retrying", expired)).values(
                status="sending", attempts=c.attempts + 1, claimed_by=owner, lease_until=now + lease,
                reclaims=c.reclaims + case((c.status == "sending", 1), else_=0),
                target=target, updated_at=now).returning(c.key)).first()
            if taken is not None:
                return Claim("claimed", "sending", message_id=message_id, reclaimed=row.status == "sending")
            row = db.execute(select(c.status, c.detail, c.message_id).where(c.key == key)).one()
        if row.status == "sending":
            return Claim("busy", "sending")
        return Claim("final", row.status, row.detail, row.message_id)

    def mark(self, key: str, status: str, detail: str = "", *, message_id: str | None = None,
             now: float | None = None) -> None:
        """What an attempt came to: sent, retrying (it will be tried again), or a final failure."""
        assert status in STATUSES, status
        now = time.time() if now is None else now
        self._run(self._mark, {"k": key, "status": status, "detail": masked(detail)[:2000], "now": now,
                               "sent": status == "sent", "mid": message_id, "zero": 0.0})

    def record(self, key: str, *, kind: str, lead: str, target: str, subject: str, status: str,
               detail: str, now: float | None = None) -> str:
        """A delivery that is not sent at all (suppressed, skipped); keeps an earlier row. Returns
        the row's status."""
        now = time.time() if now is None else now
        with self._write() as db:
            db.execute(self._insert(deliveries).values(
                key=key, kind=kind, lead=lead, target=masked(target), subject=subject, status=status,
                detail=masked(detail), created_at=now, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["key"]))
            kept: str = db.execute(select(deliveries.c.status).where(deliveries.c.key == key)).scalar_one()
            return kept

    # -- suppressions ------------------------------------------------------------------------

    def suppress(self, address: str, reason: str, lead: str = "", detail: str = "",
                 now: float | None = None) -> None:
        """No marketing e-mail to this address again; the first reason stays."""
        self.suppress_hash(address_hash(address), reason, lead, detail, now)

    def suppress_hash(self, digest: str, reason: str, lead: str = "", detail: str = "",
                      now: float | None = None) -> None:
        """The same by the address's hash (what an unsubscribe link carries, not the address)."""
        with self._write() as db:
            db.execute(self._insert(suppressions).values(
                address_hash=self.pseudonym(digest), reason=reason, lead=lead, detail=detail[:2000],
                at=time.time() if now is None else now,
            ).on_conflict_do_nothing(index_elements=["address_hash"]))

    def suppressed(self, address: str) -> str | None:
        rows = self._run(self._address_statements()[1], self._slots(address))
        return rows[0][0] if rows else None

    # -- opens and clicks --------------------------------------------------------------------

    def count_link_hit(self, seen: str, seen_until: float, limits: Sequence[tuple[str, int, float]],
                       now: float | None = None) -> Literal["counted", "repeat", "limited"]:
        """Whether an open or a click counts, in one transaction every API process shares.
        `seen` names the fetch within its window (until `seen_until`): a fetch seen already is a
        `repeat` and uses up nothing. Otherwise each of `limits`, (bucket, most hits, the end of
        its window), takes one more hit; over any one's most, the fetch is `limited`."""
        now = time.time() if now is None else now
        c = link_hits.c
        with self._write() as db:
            if now >= self._link_sweep_at:  # windows that are over, now and then
                self._link_sweep_at = now + 60
                db.execute(link_hits.delete().where(c.expires_at < now))
            fresh = db.execute(self._insert(link_hits).values(bucket=seen, hits=1, expires_at=seen_until)
                               .on_conflict_do_nothing(index_elements=["bucket"]).returning(c.bucket)).first()
            if fresh is None:
                return "repeat"
            over = False
            for bucket, most, until in limits:
                insert = self._insert(link_hits).values(bucket=bucket, hits=1, expires_at=until)
                hits = db.execute(insert.on_conflict_do_update(index_elements=["bucket"], set_={
                    "hits": c.hits + 1}).returning(c.hits)).scalar_one()
                over = over or hits > most
        return "limited" if over else "counted"

    # -- reading -----------------------------------------------------------------------------

    def list(self, *, lead: str | None = None, status: str | None = None, kind: str | None = None,
             limit: int = 200, before: float | None = None) -> list[dict[str, Any]]:
        """Newest first; `before` (an updated_at) pages on."""
        c = deliveries.c
        query = select(deliveries)
        if lead:
            query = query.where(c.lead == lead)
        if status:  # written out, not bound, and with the partial index's own condition: the
            # planners then use it (SQLite only when the condition appears as written, schema.py)
            query = query.where(c.status == bindparam("status", status, type_=String, literal_execute=True))
            if status not in ("sending", "sent"):
                query = query.where(ATTENTION)
        if kind:
            query = query.where(c.kind == kind)
        if before is not None:
            query = query.where(c.updated_at < before)
        query = query.order_by(c.updated_at.desc(), c.key).limit(limit)
        with self.engine.connect() as db:
            return [_shown(row._mapping) for row in db.execute(query)]

    def get(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(select(deliveries).where(deliveries.c.key == key)).one_or_none()
        return _shown(row._mapping) if row else None

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as db:
            rows = db.execute(select(deliveries.c.status, func.count()).group_by(deliveries.c.status))
            return {status: n for status, n in rows}

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(table)


def _shown(row: Any) -> dict[str, Any]:
    """A delivery as read: a login in its target or detail hidden, also in rows written before
    the ledger stopped keeping them."""
    out = dict(row)
    out["target"], out["detail"] = masked(out["target"]), masked(out["detail"])
    return out


def _keyed(key: str, digest: str) -> str:
    return hmac.new(key.encode(), digest.encode(), hashlib.sha256).hexdigest()


class _Prepared:
    """A Core statement compiled once for the engine's dialect, run on the driver's cursor of a
    SQLAlchemy connection (so it joins that connection's transaction)."""

    def __init__(self, engine: Engine, statement: Any) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.order = compiled.positiontup if compiled.positional else None
        self.returns = bool(getattr(compiled, "returning", None)) or statement.is_select

    def params(self, values: dict[str, Any]) -> Any:
        return tuple(values[name] for name in self.order) if self.order is not None else values

    def run(self, conn: Any, values: dict[str, Any]) -> list[Any]:
        """On a driver connection (Database._driver)."""
        cursor = conn.cursor()
        try:
            cursor.execute(self.sql, self.params(values))
            return cursor.fetchall() if self.returns else []
        finally:
            cursor.close()


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # every use ends in a commit or a rollback of its own: no reset on return (a ROLLBACK each)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=16, max_overflow=32, pool_reset_on_return=None)

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _: Any) -> None:
            # WAL: readers (the ops page) never wait for the workers' writes; NORMAL: a commit
            # does not wait for the disk, and after a power cut the last ones may be lost,
            # which the claim protocol survives (a lost mark is a reclaim)
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # no checkpoint inside a commit: the one that crossed 1,000 pages copied them back and
            # synced the file while a lead's evaluation waited on it (the e2e bench's p99);
            # Database's checkpoint thread does it on the side
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute("PRAGMA journal_size_limit=16777216")  # the log shrinks back after a burst
            # a deleted row is zeroed, not left in a free page: an erased person stays erased
            # (leadflow.people.erase; it costs a delete's page write, nothing on inserts)
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    # A database that does not answer is an error within seconds, not psycopg's two minutes: the
    # API says 503 and goes on with what needs no database.
    connect_args = {"connect_timeout": CONNECT_TIMEOUT} if "psycopg" in make_url(url).drivername else {}
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         pool_timeout=POOL_TIMEOUT, connect_args=connect_args)
