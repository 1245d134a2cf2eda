"""Logs: one JSON object per line for machines (a service manager, a log shipper), readable lines
for a person at a terminal. A line carries the workflow id, the lead id and the event id where
it has them (Temporal's loggers give the workflow's and the activity's details), and the trace id
when a span is current; never an e-mail address: one in a message is masked (a policy's ruleset
name, `lead-lifecycle@v1#a55de2c1`, is not one).

Where stderr is a terminal, a person reads it beside what the command prints: short lines, and
only warnings and errors. Anywhere else (a file, a service manager, a collector): JSON from info
up. LEADFLOW_LOG_FORMAT (json|text) and LEADFLOW_LOG_LEVEL (debug|info|warning|error) say
otherwise."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

# an address, but not a compiled policy's ruleset name (`<policy>@v<version>#<sha256[:8]>`)
EMAIL = re.compile(r"[\w.+-]+@(?!v\d+#[0-9a-f]{8}(?![\w.-]))[\w-]+(?:\.[\w-]+)*")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}
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
    """A short line for a person: the time of day, the logger, the level, the message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return masked(super().format(record))


def _trace_id() -> str | None:
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def at_a_terminal() -> bool:
    return sys.stderr.isatty()


def configure(level: int | None = None, as_json: bool | None = None, log_format: str = "",
              log_level: str = "") -> None:
    """JSON lines from info up unless a person reads stderr (a terminal): then short lines,
    warnings and errors only. `log_format` json|text and `log_level` (LEADFLOW_LOG_FORMAT and
    LEADFLOW_LOG_LEVEL in the settings) decide otherwise (and `level`, `as_json`, over both)."""
    person = at_a_terminal()
    chosen = log_format.strip().lower()
    if as_json is None:
        as_json = chosen == "json" or (chosen != "text" and not person)
    named = log_level.strip().lower()
    if level is None:
        level = LEVELS.get(named, logging.WARNING if person else logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if as_json else Readable())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: every SMTP command of the sink
    # the workflow's and activity's details go into the JSON fields, not into each message
    from temporalio import activity, workflow

    workflow.logger.workflow_info_on_message = not as_json
    activity.logger.activity_info_on_message = not as_json
    if named and named not in LEVELS:
        logging.getLogger("leadflow.logs").warning(
            "LEADFLOW_LOG_LEVEL=%r is not a level (%s); logging from %s up", named,
            "|".join(k for k in LEVELS if k != "warn"), logging.getLevelName(level).lower())
