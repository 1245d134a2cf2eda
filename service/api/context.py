"""What every request of the API and the pages shares: settings, the Temporal client, the
policy versions, the record of events passed on, and the keys."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from activities.policies import PolicyStore
from service.keys import Keys
from service.seen import SeenEvents
from service.settings import Settings


@dataclass
class Context:
    settings: Settings
    client: Client
    store: PolicyStore
    seen: SeenEvents
    keys: Keys
    token_secret: bytes  # signs page tokens
