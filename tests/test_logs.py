"""Logs: a JSON object a line with the ids a line has (Temporal's loggers give the workflow's, an
`extra` the event's, a current span the trace's) and never an e-mail address; readable lines for
a person at a terminal, masked the same."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from temporalio import activity, workflow

from ops import logs


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    """configure() takes the root logger over, as a service's start does: give it back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    on_message = (workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message = on_message


def _logged(as_json: bool, *records: tuple[str, dict[str, object]]) -> list[str]:
    logs.configure(as_json=as_json)
    out = io.StringIO()
    handler = logging.getLogger().handlers[0]
    handler.setStream(out)  # type: ignore[attr-defined]
    for message, extra in records:
        logging.getLogger("leadflow.test").warning(message, extra=extra)
    return out.getvalue().splitlines()


def test_json_lines_carry_the_ids_and_no_address() -> None:
    workflow = {"temporal_workflow": {"workflow_id": "lead-0123", "workflow_type": "LeadWorkflow",
                                      "run_id": "r1", "namespace": "default"}}
    with TracerProvider().get_tracer("test").start_as_current_span("door") as span:
        lines = _logged(True, ("mail to ana@acme.example bounced", {**workflow, "event_id": "evt-7"}),
                        ("plain", {}))
        trace_id = f"{span.get_span_context().trace_id:032x}"
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "mail to <email> bounced" and first["level"] == "warning"
    assert first["workflow_id"] == first["lead_id"] == "lead-0123" and first["event_id"] == "evt-7"
    assert first["trace_id"] == trace_id and second["trace_id"] == trace_id
    assert "lead_id" not in second and "@" not in "".join(lines)


def test_a_person_at_a_terminal_reads_lines_masked_too() -> None:
    (line,) = _logged(False, ("sent to sam@smallshop.example", {}))
    assert line.endswith("leadflow.test WARNING sent to <email>") and not line.startswith("{")
