"""DKIM signatures (RFC 6376) on nurture e-mail, made by dkimpy where the message's final bytes
are made (leadflow.delivery.pool.compose_and_send), so Gmail's and Yahoo's bulk-sender rules find
the mail authenticated for the sender's own domain.

The signed headers include List-Unsubscribe and List-Unsubscribe-Post: RFC 8058 asks for them to
be covered, or a relay could add a one-click link of its own that a receiver would trust. The
canonicalization is relaxed for both headers and body: a relay that re-folds a header or trims
trailing spaces must not break the signature (simple/simple breaks on exactly that)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dkim  # type: ignore[import-untyped]  # dkimpy ships no types

SIGNED = (b"From", b"To", b"Subject", b"Date", b"Message-ID", b"List-Unsubscribe",
          b"List-Unsubscribe-Post", b"MIME-Version", b"Content-Type")
_PROBE = b"From: probe@leadflow.invalid\r\nSubject: probe\r\n\r\nprobe\r\n"


class DkimKeyError(ValueError):
    """The key cannot sign: names the variable and says why."""


@dataclass(frozen=True)
class DkimSigner:
    """Everything a delivery process needs to sign: picklable, so the pool passes it along."""

    selector: str
    domain: str
    key: bytes  # the private key, PEM

    def sign(self, msg: bytes) -> bytes:
        """The message with its DKIM-Signature header first."""
        header: bytes = dkim.sign(msg, self.selector.encode(), self.domain.encode(), self.key,
                                  canonicalize=(b"relaxed", b"relaxed"), include_headers=list(SIGNED))
        return header + msg


def load(selector: str, domain: str, key_file: str) -> DkimSigner | None:
    """A signer from LEADFLOW_DKIM_SELECTOR, LEADFLOW_DKIM_DOMAIN and LEADFLOW_DKIM_KEY, or None
    when none is set. Read once, at start, and tried on a probe message: a missing file or a key
    dkimpy cannot use stops the worker there rather than fail every e-mail later."""
    given = {"LEADFLOW_DKIM_SELECTOR": selector, "LEADFLOW_DKIM_DOMAIN": domain,
             "LEADFLOW_DKIM_KEY": key_file}
    if not any(v.strip() for v in given.values()):
        return None
    missing = [name for name, value in given.items() if not value.strip()]
    if missing:
        raise DkimKeyError(f"{', '.join(missing)}: DKIM signing needs all of LEADFLOW_DKIM_SELECTOR, "
                           "LEADFLOW_DKIM_DOMAIN and LEADFLOW_DKIM_KEY (or none of them)")
    path = Path(key_file.strip()).expanduser()
    try:
        pem = path.read_bytes()
    except OSError as err:
        raise DkimKeyError(f"LEADFLOW_DKIM_KEY={key_file!r}: cannot read the key file "
                           f"({err.strerror or err})") from None
    signer = DkimSigner(selector.strip(), domain.strip().lower().rstrip("."), pem)
    try:
        signer.sign(_PROBE)
    except (dkim.DKIMException, ValueError, IndexError, TypeError) as err:  # dkimpy says a bad PEM many ways
        raise DkimKeyError(f"LEADFLOW_DKIM_KEY={key_file!r}: not an RSA private key in PEM that dkimpy "
                           f"can sign with ({err})") from None
    return signer
