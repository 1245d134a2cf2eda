"""The e-mail links' signer, as every process builds it from the settings: the workers sign, the
API checks. Its key is derived for links alone (Settings.key_for); what was signed before a
rotation, or before keys were derived per use (with LEADFLOW_SECRET itself), still checks."""

from __future__ import annotations

from leadflow.delivery.links import Links
from leadflow.settings import Settings


def links_of(settings: Settings) -> Links:
    current, *older = settings.keys_for("links")
    # before keys were derived per use, links were signed under the root secret itself; an
    # unsubscribe link in a mail sent then must keep working
    legacy = [settings.signing_secret(), *settings.old_secrets]
    return Links(current, settings.public, old=(*older, *legacy))
