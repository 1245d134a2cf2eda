"""What every request of the API and the pages shares: settings, the Temporal client, the
policy versions, the record of events passed on, the keys and the delivery ledger."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from activities.policies import PolicyStore
from codec.aesgcm import AesGcmCodec
from delivery.ledger import Ledger
from delivery.links import Links
from delivery.machines import Judge
from routing.desk import Desk
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
    ledger: Ledger  # deliveries and suppressions, shared with the workers
    links: Links  # reads the tokens of the links in e-mail (the workers sign them)
    judge: Judge  # a person's open or click, or a machine's
    codec: AesGcmCodec  # the workers' payload encryption, for the codec server
    desk: Desk  # the sales roster and who holds which task
