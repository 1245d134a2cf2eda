"""Logs: one JSON object per line for machines (a service manager, a log shipper), readable lines
for a person at a terminal. A line carries the workflow id, the lead id and the event id where
it has them (Temporal's loggers give the workflow's and the activity's details), and the trace id
when a span is current; never an e-mail address: one in a message is masked."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone
from typing import Any

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*")
# the attributes every LogRecord has: anything else came in `extra`
_PLAIN = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def masked(text: str) -> str:
    return EMAIL.sub("<email>", text)


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "msg": masked(record.getMessage())}
        temporal = getattr(record, "temporal_workflow", None) or getattr(record, "temporal_activity", None)
        if isinstance(temporal, dict):
            workflow_id = temporal.get("workflow_id")
            line["workflow_id"] = workflow_id
            if isinstance(workflow_id, str) and workflow_id.startswith("lead-"):
                line["lead_id"] = workflow_id
            for key in ("activity_type", "workflow_type", "attempt"):
                if temporal.get(key) is not None:
                    line[key] = temporal[key]
        for key, value in vars(record).items():
            if key not in _PLAIN and key not in line and not key.startswith("temporal_"):
                line[key] = masked(value) if isinstance(value, str) else value
        trace_id = _trace_id()
        if trace_id:
            line["trace_id"] = trace_id
        if record.exc_info:
            line["error"] = masked(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class Readable(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return masked(super().format(record))


def _trace_id() -> str | None:
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def configure(level: int = logging.INFO, as_json: bool | None = None) -> None:
    """JSON lines unless a person reads stderr (a terminal); LEADFLOW_LOG_FORMAT=json|text decides
    otherwise."""
    chosen = os.environ.get("LEADFLOW_LOG_FORMAT", "").strip().lower()
    if as_json is None:
        as_json = chosen == "json" or (chosen != "text" and not sys.stderr.isatty())
    handler = logging.StreamHandler()
    text = "%(asctime)s %(name)s %(levelname)s %(message)s"
    handler.setFormatter(JsonLines() if as_json else Readable(text))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: every SMTP command of the sink
    # the workflow's and activity's details go into the JSON fields, not into each message
    from temporalio import activity, workflow

    workflow.logger.workflow_info_on_message = not as_json
    activity.logger.activity_info_on_message = not as_json
