"""API keys and the roles they carry; deny by default.

`LEADFLOW_API_KEYS` holds comma-separated `role:key` pairs, `LEADFLOW_API_KEYS_FILE` names a file
of them (one a line, `#` comments). An item may name the person who holds the key:
`role:person:key` (or `role/person:key`), the person a roster rep id (`sales:ana:...`) or an
e-mail address (`ops:maria@acme.example:...`). That person is who "me" is in the API, whose tasks
the inbox shows first, who answers a task, and who approves a policy version: only a key that
names its person approves (as an owner the running version lists by that e-mail). A key with a
colon in it must be written with its person. A key is
compared with every known key in constant time, so how long an answer takes says nothing about
which key nearly matched; keys are never logged.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

ROLES = ("intake", "sales", "ops", "admin")
# What each permission needs; admin may do everything.
PERMISSIONS: dict[str, frozenset[str]] = {
    "send_events": frozenset({"intake", "admin"}),
    "read_leads": frozenset({"sales", "ops", "admin"}),
    "read_tasks": frozenset({"sales", "ops", "admin"}),
    "work_tasks": frozenset({"sales", "admin"}),
    "read_policies": frozenset({"ops", "admin"}),
    "validate_policies": frozenset({"ops", "admin"}),
    "govern_policies": frozenset({"ops", "admin"}),  # propose, activate, shadow
    # approve a version: an owner of the running version, whichever team's role their key has
    "approve_policies": frozenset({"sales", "ops", "admin"}),
    "read_deliveries": frozenset({"ops", "admin"}),
    "report_mail": frozenset({"ops", "admin"}),  # bounces and abuse reports (POST /v1/mail/inbound)
    "use_codec": frozenset({"ops", "admin"}),  # read (and write) what Temporal holds encrypted
    "merge_leads": frozenset({"sales", "ops", "admin"}),  # say two ids are one person (pages)
    "manage_roster": frozenset({"sales", "admin"}),  # sales own who works which queue; reading it: read_tasks
    # everything held about a person, and removing it (leadflow.people): ops and admin
    "export_people": frozenset({"ops", "admin"}),
    "erase_people": frozenset({"ops", "admin"}),
}
PERSON = re.compile(r"^[a-z][a-z0-9_-]*$")  # a roster rep id (routing.roster.NAME)
EMAIL = re.compile(r"^[^@\s:,#/]+@[^@\s:,#/]+\.[^@\s:,#/]+$")  # an owner's address


class KeysInvalid(ValueError):
    """A key list that cannot be read (said at start, never with the key in it)."""


@dataclass(frozen=True)
class Keys:
    pairs: tuple[tuple[str, bytes], ...]  # (role, key)
    # the person holding pairs[i]'s key, or None; kept beside `pairs` so what reads pairs as
    # (role, key) keeps working
    persons: tuple[str | None, ...] = ()
    # keys a page session's fingerprint of its key (never the key) with this; see fingerprint
    pepper: bytes = b""

    @classmethod
    def parse(cls, text: str, where: str) -> Keys:
        pairs = []
        persons: list[str | None] = []
        for n, raw in enumerate(text.replace(",", "\n").splitlines(), 1):
            item = raw.split("#", 1)[0].strip()
            if not item:
                continue
            holder, sep, key = item.partition(":")
            role, slash, person = (part.strip() for part in holder.partition("/"))
            key = key.strip()
            middle, colon, rest = key.partition(":")
            if not slash and colon:  # role:person:key
                if not _is_person(middle.strip()):  # a guess either way would be silent: say it
                    raise KeysInvalid(f"{where}: item {n}: between the role and the key comes the person, a "
                                      "roster rep id (lower-case letters, digits, - and _) or an e-mail "
                                      "address; a key with ':' in it is written role:person:key")
                person, key, slash = middle.strip(), rest.strip(), "/"
            if not sep or role not in ROLES:
                raise KeysInvalid(f"{where}: item {n}: write role:key or role:person:key with a role of "
                                  f"{', '.join(ROLES)}")
            if slash and not _is_person(person):
                raise KeysInvalid(f"{where}: item {n}: the person is a roster rep id (lower-case letters, "
                                  "digits, - and _) or an e-mail address")
            if len(key) < 16:
                raise KeysInvalid(f"{where}: item {n}: a {role} key needs 16 characters or more")
            pairs.append((role, key.encode()))
            persons.append(person or None)
        return cls(tuple(pairs), tuple(persons))

    @classmethod
    def load(cls, keys: str, keys_file: str) -> Keys:
        found = cls.parse(keys, "LEADFLOW_API_KEYS") if keys else cls(())
        if keys_file:
            try:
                text = Path(keys_file).read_text(encoding="utf-8")
            except OSError as err:
                raise KeysInvalid(f"LEADFLOW_API_KEYS_FILE {keys_file}: {err.strerror}") from None
            more = cls.parse(text, keys_file)
            found = cls(found.pairs + more.pairs, found._persons() + more._persons())
        return found

    def role_of(self, presented: str | None) -> str | None:
        """The role of a presented key, or None; every known key is compared, in constant time."""
        holder = self.holder_of(presented)
        return holder[0] if holder else None

    def holder_of(self, presented: str | None) -> tuple[str, str | None] | None:
        """(role, person) of a presented key, person None when the key names nobody; None for an
        unknown key. Every known key is compared, in constant time."""
        if not presented:
            return None
        given = presented.encode()
        found = None
        persons = self._persons()
        for i, (known_role, key) in enumerate(self.pairs):
            if hmac.compare_digest(given, key) and found is None:
                found = (known_role, persons[i])
        return found

    def fingerprint(self, key: str) -> str:
        """What a page session keeps of the key it was opened with: removing the key ends the
        session (holder_of_fingerprint finds nothing). Keyed, so the cookie says nothing of it."""
        return hmac.new(self.pepper, key.encode(), "sha256").hexdigest()[:32]

    def holder_of_fingerprint(self, fingerprint: str) -> tuple[str, str | None] | None:
        if not fingerprint:
            return None
        persons = self._persons()
        found = None
        for i, (role, key) in enumerate(self.pairs):
            mine = hmac.new(self.pepper, key, "sha256").hexdigest()[:32]
            if hmac.compare_digest(mine, fingerprint) and found is None:
                found = (role, persons[i])
        return found

    def _persons(self) -> tuple[str | None, ...]:
        return self.persons + (None,) * (len(self.pairs) - len(self.persons))


def _is_person(text: str) -> bool:
    return bool(PERSON.match(text) or EMAIL.match(text))


def allowed(role: str | None, permission: str) -> bool:
    return role is not None and role in PERMISSIONS[permission]


def demo_keys(path: Path) -> dict[str, str]:
    """Keys for sales, ops and intake, made on first run and kept (mode 600) for the next."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{role}:{role}-{secrets.token_urlsafe(18)}" for role in ("sales", "ops", "intake")]
        header = "# made by `leadflow up` for this machine; never commit it\n"
        path.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o600)
    keys = Keys.parse(path.read_text(encoding="utf-8"), str(path))
    return {role: key.decode() for role, key in keys.pairs}
