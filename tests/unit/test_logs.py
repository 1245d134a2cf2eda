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

from leadflow.ops import logs
from leadflow.settings import Settings


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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _configured(monkeypatch: pytest.MonkeyPatch, terminal: bool, **env: str) -> io.StringIO:
    """configure() as a service's start runs it, with stderr a terminal or a file, and the env."""
    for name in ("LEADFLOW_LOG_FORMAT", "LEADFLOW_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    settings = Settings.from_env()  # as the CLI and worker.py read them
    logs.configure(log_format=settings.log_format, log_level=settings.log_level)
    return err


def test_the_ruleset_name_is_not_taken_for_an_address_and_addresses_stay_masked() -> None:
    message = ("active policy lead-lifecycle v1 (lead-lifecycle@v1#a55de2c1, sha256 a55de2c1a8fe) "
               "for ana@acme.example")
    for as_json in (True, False):
        (line,) = _logged(as_json, (message, {"ruleset": "lead-lifecycle@v12#0123abcd"}))
        assert "(lead-lifecycle@v1#a55de2c1, sha256" in line and "for <email>" in line
        assert "ana@" not in line
        if as_json:
            assert json.loads(line)["ruleset"] == "lead-lifecycle@v12#0123abcd"
    # what only looks like a ruleset is still masked where it is an address
    assert logs.masked("kim@v1.example, kim@v1, kim@v1#a55de2c1.example") == \
        "<email>, <email>, <email>#a55de2c1.example"


def test_at_a_terminal_a_person_reads_short_lines_of_warnings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    err = _configured(monkeypatch, terminal=True)
    logging.getLogger("alembic.runtime.migration").info("Running upgrade 0001 -> 0002")
    logging.getLogger("leadflow.content").info("content/welcome-guide.yaml: loaded")
    logging.getLogger("leadflow.worker").warning("links in e-mail start http://127.0.0.1:8000")
    (line,) = err.getvalue().splitlines()
    assert not line.startswith("{")
    clock, rest = line.split(" ", 1)
    assert len(clock) == 8 and clock.count(":") == 2  # the time of day, no date
    assert rest == "leadflow.worker WARNING links in e-mail start http://127.0.0.1:8000"


def test_anywhere_else_json_lines_from_info_up(monkeypatch: pytest.MonkeyPatch) -> None:
    err = _configured(monkeypatch, terminal=False)
    logging.getLogger("leadflow.content").info("content/welcome-guide.yaml: loaded")
    logging.getLogger("leadflow.content").debug("not this")
    (line,) = err.getvalue().splitlines()
    assert json.loads(line)["msg"] == "content/welcome-guide.yaml: loaded"


def test_the_level_and_the_format_are_asked_for_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    err = _configured(monkeypatch, terminal=True, LEADFLOW_LOG_LEVEL="INFO")
    logging.getLogger("leadflow.content").info("loaded")
    assert err.getvalue().rstrip().endswith("leadflow.content INFO loaded")

    err = _configured(monkeypatch, terminal=True, LEADFLOW_LOG_FORMAT="json", LEADFLOW_LOG_LEVEL="debug")
    logging.getLogger("leadflow.content").debug("looked")
    assert json.loads(err.getvalue())["level"] == "debug"

    err = _configured(monkeypatch, terminal=False, LEADFLOW_LOG_FORMAT="text", LEADFLOW_LOG_LEVEL="error")
    logging.getLogger("leadflow.worker").warning("not this")
    logging.getLogger("leadflow.worker").error("this")
    assert err.getvalue().rstrip().endswith("leadflow.worker ERROR this") and "not this" not in err.getvalue()

    err = _configured(monkeypatch, terminal=False, LEADFLOW_LOG_LEVEL="loud")
    (said,) = (json.loads(line) for line in err.getvalue().splitlines())
    assert "LEADFLOW_LOG_LEVEL='loud' is not a level" in said["msg"] and "from info up" in said["msg"]
