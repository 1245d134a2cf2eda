"""DKIM signing (leadflow.delivery.dkim_sign): a message leadflow writes, signed with a key made
here, verifies with dkimpy against that key's DNS record, covers the one-click headers, and stops
verifying when a signed header changes; bad settings are refused at start, naming the variable."""

from __future__ import annotations

import base64
import email
from collections.abc import Callable
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from leadflow.delivery import message
from leadflow.delivery.content import Rendered
from leadflow.delivery.dkim_sign import SIGNED, DkimSigner
from leadflow.delivery.links import Links, Mail
from leadflow.settings import Settings, SettingsError


@pytest.fixture(scope="module")
def keypair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def dns_for(record: bytes, name: bytes = b"mail2026._domainkey.acme.example.") -> Callable[..., bytes | None]:
    def lookup(asked: bytes, timeout: int = 5) -> bytes | None:
        return record if asked == name else None
    return lookup


def a_message() -> bytes:
    rendered = Rendered(subject="Welcome, Ana — ünïcode too", text="Hello\nhttps://acme.example/guide\n",
                        html="<p>Hello</p>", text_links=(), html_links=())
    links = Links("k" * 40, "https://api.acme.example")
    mail = Mail(lead="lead-1", delivery="d" * 16, content="welcome-guide", sent=1_800_000_000,
                address="a" * 64)
    return message.build(rendered, key="lead-1:welcome-guide:1", sender="Acme <news@acme.example>",
                         to="ana@example.org", mail=mail, links=links,
                         unsubscribe_url="https://api.acme.example/u/token")


def test_signed_message_verifies_and_covers_the_unsubscribe_headers(keypair: tuple[bytes, bytes]) -> None:
    pem, record = keypair
    signed = DkimSigner("mail2026", "acme.example", pem).sign(a_message())
    assert signed.startswith(b"DKIM-Signature:")
    assert dkim.verify(signed, dnsfunc=dns_for(record))
    value = "".join(str(email.message_from_bytes(signed)["DKIM-Signature"]).split())
    tags = dict(t.split("=", 1) for t in value.split(";") if "=" in t)
    covered = set(tags["h"].lower().split(":"))
    assert {h.decode().lower() for h in SIGNED} <= covered
    assert "list-unsubscribe-post" in covered and tags["d"] == "acme.example" and tags["s"] == "mail2026"


def test_a_changed_signed_header_no_longer_verifies(keypair: tuple[bytes, bytes]) -> None:
    pem, record = keypair
    signed = DkimSigner("mail2026", "acme.example", pem).sign(a_message())
    forged = signed.replace(b"List-Unsubscribe: <https://api.acme.example/u/token>",
                            b"List-Unsubscribe: <https://evil.example/u/token>")
    assert forged != signed
    assert not dkim.verify(forged, dnsfunc=dns_for(record))
    # and a key that is not the one published does not verify either
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    assert not dkim.verify(DkimSigner("mail2026", "acme.example", other).sign(a_message()),
                           dnsfunc=dns_for(record))


def test_settings_read_the_key_once_and_refuse_what_cannot_sign(tmp_path: Path,
                                                                 keypair: tuple[bytes, bytes]) -> None:
    assert Settings(home=tmp_path).dkim() is None
    key = tmp_path / "dkim.pem"
    key.write_bytes(keypair[0])
    signer = Settings(home=tmp_path, dkim_selector="mail2026", dkim_domain="Acme.Example.",
                      dkim_key=str(key)).dkim()
    assert signer is not None and signer.domain == "acme.example" and signer.key == keypair[0]
    with pytest.raises(SettingsError, match="LEADFLOW_DKIM_KEY='.*missing.pem': cannot read"):
        Settings(home=tmp_path, dkim_selector="s", dkim_domain="acme.example",
                 dkim_key=str(tmp_path / "missing.pem")).dkim()
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SettingsError, match="LEADFLOW_DKIM_KEY=.*not an RSA private key in PEM"):
        Settings(home=tmp_path, dkim_selector="s", dkim_domain="acme.example", dkim_key=str(bad)).dkim()
    with pytest.raises(SettingsError, match="LEADFLOW_DKIM_SELECTOR: DKIM signing needs all"):
        Settings(home=tmp_path, dkim_domain="acme.example", dkim_key=str(key)).dkim()
    env = {"LEADFLOW_DKIM_SELECTOR": "mail2026", "LEADFLOW_DKIM_DOMAIN": "acme.example",
           "LEADFLOW_DKIM_KEY": str(key), "LEADFLOW_HOME": str(tmp_path)}
    assert Settings.from_env(env).dkim() == signer
