"""LEADFLOW_SECRET: a key per use derived from it, refused when missing or short outside the
embedded setup, and rotated without voiding the links already sent."""

from __future__ import annotations

import pytest

from leadflow.delivery.links import Links, Mail
from leadflow.settings import Settings, SettingsError
from leadflow.signing import links_of

ROOT = "r" * 40
CLUSTER = {"target_host": "temporal.internal:7233"}


def mail() -> Mail:
    return Mail(lead="lead-ana", delivery="d-1", content="welcome-guide", sent=1_700_000_000, address="x")


def test_each_use_has_its_own_key_and_none_is_the_secret_itself(tmp_path):
    settings = Settings(home=tmp_path, secret=ROOT)
    keys = {use: settings.key_for(use) for use in ("links", "session", "page-tokens", "key-fingerprint")}
    assert len(set(keys.values())) == 4 and ROOT not in keys.values()
    # a session cookie's key cannot read an e-mail link (held by every recipient), nor the reverse
    link = links_of(settings).unsubscribe(mail())
    token = link.rsplit("/", 1)[1]
    assert links_of(settings).read("unsubscribe", token)["l"] == "lead-ana"
    with pytest.raises(ValueError):
        Links(keys["session"], settings.public).read("unsubscribe", token)


def test_a_missing_or_short_secret_is_refused_with_a_cluster_and_said_without(tmp_path):
    for secret in ("", "short-secret"):
        with pytest.raises(SettingsError, match="LEADFLOW_SECRET"):
            Settings(home=tmp_path, secret=secret, connect=CLUSTER).check_secret()
        warning = Settings(home=tmp_path, secret=secret).check_secret()  # the embedded setup
        assert warning is not None and "LEADFLOW_SECRET" in warning
    assert Settings(home=tmp_path, secret=ROOT, connect=CLUSTER).check_secret() is None
    with pytest.raises(SettingsError, match="LEADFLOW_CRM_SECRET"):
        Settings(home=tmp_path, webhook_secret="w" * 40, crm_secret="w" * 40).check_delivery()


def test_rotating_keeps_the_links_already_sent(tmp_path):
    before = Settings(home=tmp_path, secret=ROOT)
    sent = links_of(before).unsubscribe(mail()).rsplit("/", 1)[1]
    # links from before keys were derived per use: signed with the root secret itself
    legacy = Links(ROOT, before.public).unsubscribe(mail()).rsplit("/", 1)[1]
    rotated = Settings.from_env({"LEADFLOW_HOME": str(tmp_path), "LEADFLOW_SECRET": "n" * 40,
                                 "LEADFLOW_OLD_SECRETS": ROOT})
    for token in (sent, legacy):
        assert links_of(rotated).read("unsubscribe", token)["l"] == "lead-ana"
    forgotten = Settings(home=tmp_path, secret="n" * 40)  # the old secret dropped from the list
    with pytest.raises(ValueError):
        links_of(forgotten).read("unsubscribe", sent)
    assert links_of(rotated).unsubscribe(mail()) != links_of(before).unsubscribe(mail())
