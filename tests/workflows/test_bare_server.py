"""An operator points `python worker.py` at a Temporal server that has never seen leadflow (a
fresh cluster, or `temporal server start-dev` started by hand): the worker registers its four
search attributes and serves leads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from leadflow.intake import list_workflows, send
from leadflow.settings import Settings
from leadflow.temporal import converter
from tests.support.temporal_harness import ROOT, dev_server
from workflows import search


def test_a_worker_registers_its_search_attributes_on_a_bare_server_and_serves(tmp_path):
    async def scenario():
        env, port = await dev_server(bare=True)  # no search attributes, as started by hand
        # as the CLI beside the worker: the codec key made under the shared LEADFLOW_HOME
        client = await Client.connect(f"127.0.0.1:{port}", data_converter=converter(Settings(home=tmp_path)))
        before = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default"))
        assert not {k.name for k in search.ALL} & set(before.custom_attributes)
        environ = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "LEADFLOW_HOME": str(tmp_path),
                   "LEADFLOW_TASK_QUEUE": "bare", "LEADFLOW_EVAL_PROCESSES": "1",
                   "LEADFLOW_SECRET": "bare-server-secret-0123456789abcdef"}
        log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 (the worker writes it)
        worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=environ,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            settings = Settings(task_queue="bare")
            sent = await send(client, settings, {"id": "b1", "type": "signup",
                                                 "lead": {"email": "bare@acme.example", "role": "manager"}})
            deadline = time.monotonic() + 60
            while not await _indexed(client):
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the lead was never indexed"
                await asyncio.sleep(0.3)
            after = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace="default"))
            kinds = {name: after.custom_attributes[name] for name in (k.name for k in search.ALL)}
            assert kinds == {"LeadflowState": 2, "LeadflowScore": 4, "LeadflowQueue": 2,
                             "LeadflowTaskStatus": 2, "LeadflowTaskDue": 6}  # keyword, double, datetime
            state = await client.get_workflow_handle(sent["lead_id"]).query("state")
            assert state["state"] == "nurturing"
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            log.close()
            await env.shutdown()

    asyncio.run(scenario())


async def _indexed(client) -> bool:
    try:
        return bool(await list_workflows(client, "LeadflowState = 'nurturing'"))
    except RPCError:  # until the worker has registered the attribute
        return False
