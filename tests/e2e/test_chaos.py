"""The short version of `make chaos` (chaos/run.py): leads through the API while workers and the
Temporal server are killed with SIGKILL and started again; nothing lost, nothing twice outside
the documented window, every lead where the simulation of its archived events puts it."""

from __future__ import annotations

import asyncio

from chaos.run import chaos


def test_kills_of_workers_and_the_server_lose_nothing_and_do_nothing_twice():
    figures = asyncio.run(chaos(leads=40, days=21, worker_kills=3, server_kills=1, seed=11, settle=120))
    assert figures["kills"] == figures["restarts"] == 4
    assert figures["events"] > 100 and figures["handoffs"] >= 1 and figures["emails"] >= 20
    assert (figures["lost"], figures["duplicated"], figures["mismatched"]) == (0, 0, 0), figures
