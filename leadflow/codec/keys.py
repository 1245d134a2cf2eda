"""The codec's keys: `LEADFLOW_CODEC_KEYS`, comma-separated `id:base64` items of 32-byte keys.

The first key encrypts; every key decrypts, so a new key goes first and an old one stays listed
until nothing encrypted with it is still read (then it can be retired). With no keys set, one is
made once under LEADFLOW_HOME (`codec-keys`, mode 0600, never committed): enough for one machine;
workers, the API and the CLI on several machines must be given the same LEADFLOW_CODEC_KEYS.
Errors name the item, never the key."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

KEY_BYTES = 32  # AES-256
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
FILE_NAME = "codec-keys"


class CodecKeysInvalid(ValueError):
    """A key list that cannot be used; says which item and why."""


@dataclass(frozen=True)
class Keyring:
    keys: tuple[tuple[str, bytes], ...]  # (id, key); the first encrypts

    @property
    def current(self) -> tuple[str, bytes]:
        return self.keys[0]

    def get(self, key_id: str) -> bytes | None:
        return next((key for known, key in self.keys if known == key_id), None)

    @classmethod
    def parse(cls, text: str, where: str = "LEADFLOW_CODEC_KEYS") -> Keyring:
        keys: list[tuple[str, bytes]] = []
        for n, raw in enumerate(text.replace("\n", ",").split(","), 1):
            item = raw.strip()
            if not item or item.startswith("#"):
                continue
            key_id, sep, encoded = item.partition(":")
            key_id = key_id.strip()
            if not sep or not KEY_ID.fullmatch(key_id):
                raise CodecKeysInvalid(f"{where}: item {n}: write id:base64-key, the id of letters, digits, "
                                       "'.', '_' or '-' (at most 64)")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise CodecKeysInvalid(f"{where}: item {n} ({key_id}): the key is not base64") from None
            if len(key) != KEY_BYTES:
                raise CodecKeysInvalid(f"{where}: item {n} ({key_id}): the key is {len(key)} bytes; AES-256 "
                                       f"needs {KEY_BYTES} (make one: openssl rand -base64 32)")
            if any(known == key_id for known, _ in keys):
                raise CodecKeysInvalid(f"{where}: item {n}: the id {key_id} is listed twice")
            keys.append((key_id, key))
        if not keys:
            raise CodecKeysInvalid(f"{where}: no key in it")
        return cls(tuple(keys))


def new_key_line() -> str:
    return f"local-{secrets.token_hex(3)}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def load(keys: str, home: Path) -> tuple[Keyring, str]:
    """The keyring and where it came from: `keys` (LEADFLOW_CODEC_KEYS) when set, else the file
    under `home`, made on first use. Processes that start together make it once: the file
    appears whole (a hard link of a finished one) or not at all."""
    if keys.strip():
        return Keyring.parse(keys), "LEADFLOW_CODEC_KEYS"
    path = home / FILE_NAME
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        draft = home / f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(new_key_line() + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:  # another process made it first: theirs is the key
            pass
        finally:
            with contextlib.suppress(OSError):
                draft.unlink()
    for _ in range(50):  # a file copied in by hand may still be written
        text = path.read_text(encoding="utf-8")
        if text.strip():
            return Keyring.parse(text, str(path)), str(path)
        time.sleep(0.1)
    return Keyring.parse(text, str(path)), str(path)
