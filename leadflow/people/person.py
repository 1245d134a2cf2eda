"""Who a person is to leadflow: the lead an id names (after any merge, the lead that survived),
every lead id merged into it, and every address and external id those leads were known by.

A person is more than their current lead: an alias keeps its own archived events, deliveries and
hand-offs under its own id, and the addresses are what the mail sink, the suppression list and
the anonymous visitors know them by. Each place adds what it knows (the lead's state, the alias
table, the archive's events, the ledger's e-mail rows) until nothing new turns up."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from temporalio.client import Client

from leadflow.db.database import Database
from leadflow.db.schema import deliveries, events, lead_aliases
from leadflow.operations import leads as lead_ops
from rules.identity import lead_key
from rules.models import LeadRef

ROUNDS = 4  # new ids found lead to more rows; a merge chain is flattened, so a few rounds suffice


class NoSuchPerson(LookupError):
    pass


@dataclass
class Person:
    lead: str  # the lead the id now is (the survivor of any merge)
    leads: list[str]  # that lead first, then every id merged into it
    addresses: set[str] = field(default_factory=set)  # lower-cased
    external_ids: set[str] = field(default_factory=set)
    view: dict[str, Any] | None = None  # the lead's `state` query, when its workflow answers


async def find(client: Client, ledger: Database, who: str) -> Person:
    """The person an e-mail, external id or lead id names; NoSuchPerson when leadflow holds
    nothing under it."""
    try:
        key = lead_ops.lead_id(who)
    except ValueError as err:
        raise NoSuchPerson(f"{who!r} is not an e-mail, external id or lead id: {err}") from None
    survivor = await asyncio.to_thread(_survivor, ledger, key)
    view = await lead_ops.lead(client, survivor)
    person = Person(survivor, [survivor])
    if "@" in who:
        person.addresses.add(who.strip().lower())
    elif not who.strip().startswith("lead-"):
        person.external_ids.add(who.strip())
    _from_view(person, view)
    person.view = view
    for _ in range(ROUNDS):
        before = (len(person.leads), len(person.addresses), len(person.external_ids))
        await asyncio.to_thread(_from_database, ledger, person)
        for ref in [LeadRef(email=a) for a in sorted(person.addresses)] + [
                LeadRef(external_id=x) for x in sorted(person.external_ids)]:
            _add(person.leads, lead_key(ref))
        if (len(person.leads), len(person.addresses), len(person.external_ids)) == before:
            break
    if view is None and not await asyncio.to_thread(_anything, ledger, person.leads):
        raise NoSuchPerson(f"no lead {key} ({who})")
    return person


def _survivor(ledger: Database, key: str) -> str:
    from leadflow.identity.aliases import Aliases

    return Aliases(ledger).one(key)


def _add(leads: list[str], key: str) -> None:
    if key not in leads:
        leads.append(key)


def _from_view(person: Person, view: dict[str, Any] | None) -> None:
    if view is None:
        return
    _identity(person, view.get("profile") or {})
    for alias in view.get("aliases") or []:
        _identity(person, alias)
        if alias.get("lead_id"):
            _add(person.leads, str(alias["lead_id"]))


def _identity(person: Person, ref: dict[str, Any]) -> None:
    if isinstance(ref.get("email"), str) and ref["email"].strip():
        person.addresses.add(ref["email"].strip().lower())
    if ref.get("external_id") not in (None, ""):
        person.external_ids.add(str(ref["external_id"]).strip())


def _from_database(ledger: Database, person: Person) -> None:
    """Ids merged into the person's leads (the alias table, both ways), and the addresses and
    external ids their archived events and e-mail deliveries name."""
    a = lead_aliases.c
    with ledger.engine.connect() as db:
        for alias, lead in db.execute(select(a.alias, a.lead).where(
                a.lead.in_(person.leads) | a.alias.in_(person.leads))).all():
            _add(person.leads, alias)
            _add(person.leads, lead)
        for (body,) in db.execute(select(events.c.body).where(events.c.lead.in_(person.leads))):
            event = json.loads(body)
            _identity(person, event.get("lead") or {})
            same = (event.get("data") or {}).get("same_as")
            if isinstance(same, dict):
                _identity(person, same)
        d = deliveries.c
        for (target,) in db.execute(select(d.target).where(d.lead.in_(person.leads), d.kind == "email")):
            if "@" in target:
                person.addresses.add(target.strip().lower())


def _anything(ledger: Database, leads: list[str]) -> bool:
    with ledger.engine.connect() as db:
        for table in (events, deliveries):
            if db.execute(select(table.c.lead).where(table.c.lead.in_(leads)).limit(1)).first():
                return True
    return False
