"""An A/B test live, on the time-skipping server (issue 27, point 4): the shipped policy with its
welcome e-mail split 50/50 between welcome-guide and welcome-checklist. Eight leads sign up; the
e-mail each gets over SMTP is the variant `policy simulate` of the archive picks for it (and
rules.variants alone), its story says which, and Temporal replays its history the same. Then
people open and click, a privacy proxy opens and a scanner clicks, two leads ask for a demo: the
test's figures (leadflow.reports.variants) count what happened, the machines' fetches aside."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from leadflow.archive.events import EventArchive
from leadflow.db.database import Database
from leadflow.delivery.links import delivery_digest
from leadflow.reports.proportions import Rate
from leadflow.reports.variants import figures
from rules.compile import load_compiled
from rules.simulate import simulate_people
from rules.variants import ab_steps
from tests.support.policy import AB_WELCOME, ab_policy_text
from tests.support.temporal_harness import HOT, ROOT, harness
from tests.support.wire import SmtpCatcher

EMAILS = [f"reader{i}@ab.example" for i in range(8)]
PEOPLE_OPEN, PEOPLE_CLICK, DEMO = {0, 3, 4}, {3}, {3, 5}
MACHINE_OPEN, MACHINE_CLICK = {1, 7}, {0}


def _policy_dir(root: Path) -> Path:
    folder = root / "policies"
    folder.mkdir()
    (folder / "lead-lifecycle.v1.yaml").write_text(ab_policy_text())
    (folder / "roster.yaml").write_text((ROOT / "policies" / "roster.yaml").read_text())
    return folder


def test_a_live_lead_gets_the_variant_the_simulation_picks_and_the_figures_count_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        with SmtpCatcher() as smtp:
            async with harness(tmp_path, policy_dir=_policy_dir(tmp_path), smtp_host="127.0.0.1",
                               smtp_port=smtp.port) as h:
                policy = load_compiled(str(h.settings.policy_dir / "lead-lifecycle.v1.yaml"))
                (ab,) = ab_steps(policy.policy)
                handles = [await h.signup(email, first_name=f"Reader{i}", **HOT)
                           for i, email in enumerate(EMAILS)]
                ids = [(await h.state(handle))["lead_id"] for handle in handles]
                welcome: list[dict[str, Any]] = []
                for i, lead in enumerate(ids):
                    (mail,) = await h.delivered(lead, "email")
                    assert mail["status"] == "sent" and ab.sent_by(mail["key"], mail["subject"])
                    welcome.append(mail)
                    variant = mail["subject"]
                    assert variant == ab.choose(lead)
                    (arrived,) = await smtp.wait_for(EMAILS[i])
                    profile = {"email": EMAILS[i], "first_name": f"Reader{i}", **HOT}
                    assert arrived["Subject"] == h.delivery.content.get(variant).render(profile, "u").subject
                    story = (await h.state(handles[i]))["story"]
                    told = [s for s in story if s["why"].startswith("A/B test")]
                    assert [(s["why"], s["matched"]["variant"]) for s in told] == [
                        (f"A/B test awareness[0]: {variant} (of {AB_WELCOME[0]} 50%, {AB_WELCOME[1]} 50%)",
                         variant)]
                variants = [m["subject"] for m in welcome]
                assert set(variants) == set(AB_WELCOME)  # these eight meet both sides

                for i, handle in enumerate(handles):
                    mail = welcome[i]
                    fetched = {"content": mail["subject"], "delivery": delivery_digest(mail["key"])}
                    for kind, people, machines in (("email_open", PEOPLE_OPEN, MACHINE_OPEN),
                                                   ("email_click", PEOPLE_CLICK, MACHINE_CLICK)):
                        if i in people | machines:
                            await handle.execute_update("submit", {
                                "id": f"{kind}-{i}", "type": kind,
                                "data": {**fetched, "machine": i in machines}})
                    if i in DEMO:
                        await handle.execute_update("submit", {"id": f"demo-{i}", "type": "demo_request"})
                        assert (await h.state(handle))["state"] == "sales-ready"
                await h.replay("ab-welcome", *handles)

                # `policy simulate` on what the archive kept picks the same variant for each lead
                until = await h.env.get_current_time()
                archive = EventArchive(Database.of(h.settings))
                by_lead: dict[str, list[dict[str, Any]]] = {lead: [] for lead in ids}
                for raw in archive.export():
                    if raw["lead_id"] in by_lead:
                        by_lead[raw["lead_id"]].append(raw)
                simulated = simulate_people(policy, by_lead, until)
                assert [simulated[lead].ab_sends for lead in ids] == [[("awareness[0]", v)] for v in variants]

                # the figures: what the ledger sent, what people (not machines) did, who moved on
                by_variant = {v: [i for i in range(len(ids)) if variants[i] == v] for v in AB_WELCOME}
                got = {f.variant: f for f in figures(archive.ledger, ab)}
                for v, leads in by_variant.items():
                    def among(chosen: set[int], leads: list[int] = leads) -> Rate:
                        return Rate(len(chosen & set(leads)), len(leads))
                    f = got[v]
                    assert (f.share, f.assigned, f.sent) == (50, len(leads), len(leads))
                    assert (f.opened, f.clicked, f.sales_ready) == (among(PEOPLE_OPEN), among(PEOPLE_CLICK),
                                                                    among(DEMO)), f
                assert Counter(variants) == Counter({v: got[v].sent for v in AB_WELCOME})
    asyncio.run(scenario())
