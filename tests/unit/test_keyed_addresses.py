"""The addresses the shared database keeps (the suppression list, the topic choices) are keyed
hashes: nobody holding the database can match them against a list of addresses, a database kept
plain before is keyed when it is migrated, and a rotation of LEADFLOW_SECRET keeps every
suppression in force."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from leadflow.db.database import PSEUDONYM_USE, Database, address_hash
from leadflow.delivery.preferences import preferences_of
from leadflow.settings import Settings

GONE, KEPT = "Ana.Gone@Example.org", "bo@example.org"


def _plain(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def _kept_hashes(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute(f"SELECT address_hash FROM {table}")}


def test_a_database_kept_plain_is_keyed_when_migrated_and_still_suppresses(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    url = f"sqlite:///{path}"
    # a database as leadflow left it before keyed hashes: migrated to 0013, plain digests kept
    old = Database(url)
    with old._migration_lock() as connection:
        config = Config()
        migrations = Path(__file__).parents[2] / "leadflow" / "db" / "migrations"
        config.set_main_option("script_location", str(migrations))
        config.attributes["connection"] = connection
        command.upgrade(config, "0013")
        connection.commit()
    old.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO suppressions (address_hash, reason, lead, detail, at) "
                   "VALUES (?, 'unsubscribed', '', '', 1)", (_plain(GONE),))
        db.execute("INSERT INTO topic_choices (address_hash, topic, at) VALUES (?, 'events', 1)",
                   (_plain(KEPT),))

    settings = Settings(home=tmp_path, secret="s" * 40)
    ledger = Database.open(url, settings.keys_for(PSEUDONYM_USE))
    try:
        kept = _kept_hashes(path, "suppressions") | _kept_hashes(path, "topic_choices")
        assert not kept & {_plain(GONE), _plain(KEPT)}, "a plain SHA-256 of an address is still kept"
        assert ledger.suppressed(GONE) == "unsubscribed" and ledger.suppressed(KEPT) is None
        choices = preferences_of(ledger)
        assert choices.drops(KEPT, "events") and not choices.drops(KEPT, "guides")
        # the claim of an e-mail reads the same list
        claim = ledger.claim("d-1", kind="email", lead="l", target=GONE, subject="welcome", owner="w",
                             lease=30, address=GONE)
        assert claim.status == "suppressed"
        # another secret's database would not match these rows: the key is what makes them speak
        other = Database(url, (Settings(home=tmp_path, secret="t" * 40).key_for(PSEUDONYM_USE),))
        try:
            assert other.suppressed(GONE) is None
        finally:
            other.close()
    finally:
        ledger.close()


def test_a_rotated_secret_keeps_every_suppression_and_choice(tmp_path: Path) -> None:
    before = Settings(home=tmp_path, secret="a" * 40)
    ledger = Database.of(before)
    ledger.suppress(GONE, "complaint")
    preferences_of(ledger).choose(address_hash(KEPT), {"events"})
    ledger.close()

    after = Settings(home=tmp_path, secret="b" * 40, old_secrets=("a" * 40,))
    ledger = Database.of(after)
    try:
        assert ledger.suppressed(GONE) == "complaint"
        assert ledger.claim("d-2", kind="email", lead="l", target=GONE, subject="s", owner="w", lease=30,
                            address=GONE.upper()).status == "suppressed"
        assert preferences_of(ledger).drops(KEPT, "events")
        # a choice made again is written under the new key, the old row gone
        preferences_of(ledger).choose(address_hash(KEPT), {"events", "news"})
        assert preferences_of(ledger).dropped(address_hash(KEPT)) == {"events", "news"}
        assert len(_kept_hashes(tmp_path / "leadflow.sqlite", "topic_choices")) == 1
    finally:
        ledger.close()
    # LEADFLOW_OLD_SECRETS emptied too soon
    dropped_old = Database(after.shared_db_url, (after.key_for(PSEUDONYM_USE),))
    try:
        assert dropped_old.suppressed(GONE) is None  # why docs/people.md says to keep the old secret
    finally:
        dropped_old.close()


def test_a_process_with_another_secret_is_refused_and_a_rotation_keeps_one_key(tmp_path: Path) -> None:
    """The database keeps which key its addresses are under: a process given another secret is
    refused at start; after a rotation every process writes under the key the rows are under (the
    old secret, listed in LEADFLOW_OLD_SECRETS), so one not yet rotated still sees every new
    suppression; outside the embedded setup, without a secret, nothing that needs the key works."""
    from leadflow.settings import SettingsError

    old = Settings(home=tmp_path, secret="a" * 40)
    Database.of(old).close()  # the first opening: the rows are keyed with this secret from now on
    with pytest.raises(SettingsError, match="another LEADFLOW_SECRET"):
        Database.of(Settings(home=tmp_path, secret="b" * 40))
    rotated = Database.of(Settings(home=tmp_path, secret="b" * 40, old_secrets=("a" * 40,)))
    not_yet = Database.of(old)
    try:
        rotated.suppress(GONE, "unsubscribed")  # through a rotated API
        assert not_yet.suppressed(GONE) == "unsubscribed"  # a worker not yet rotated sees it
        assert not_yet.claim("d-3", kind="email", lead="l", target=GONE, subject="s", owner="w", lease=30,
                             address=GONE).status == "suppressed"
    finally:
        rotated.close()
        not_yet.close()
    remote = Settings(home=tmp_path / "other", connect={"target_host": "temporal.example:7233"},
                      database_url=f"sqlite:///{tmp_path / 'leadflow.sqlite'}")
    reader = Database.of(remote)  # a report, a lead's page: no address needed
    try:
        with pytest.raises(SettingsError, match="LEADFLOW_SECRET is not set"):
            reader.suppressed(GONE)
    finally:
        reader.close()
