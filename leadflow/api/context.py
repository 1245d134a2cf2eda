"""What every request of the API and the pages shares: settings, the Temporal client, the
policy versions, the record of events passed on, the keys and the delivery ledger."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from activities.policies import PolicyStore
from leadflow.codec.aesgcm import AesGcmCodec
from leadflow.db.database import Database
from leadflow.delivery.links import Links
from leadflow.delivery.machines import Judge
from leadflow.keys import Keys
from leadflow.routing.desk import Desk
from leadflow.seen import SeenEvents
from leadflow.settings import Settings


@dataclass
class Context:
    settings: Settings
    client: Client
    store: PolicyStore
    seen: SeenEvents
    keys: Keys
    token_secret: bytes  # signs page tokens
    ledger: Database  # deliveries and suppressions, shared with the workers
    links: Links  # reads the tokens of the links in e-mail (the workers sign them)
    judge: Judge  # a person's open or click, or a machine's
    codec: AesGcmCodec  # the workers' payload encryption, for the codec server
    desk: Desk  # the sales roster and who holds which task
