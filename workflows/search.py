"""Custom search attributes, so `temporal workflow list --query` finds leads and open tasks."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

LEAD_STATE = SearchAttributeKey.for_keyword("LeadflowState")
LEAD_SCORE = SearchAttributeKey.for_float("LeadflowScore")
TASK_QUEUE = SearchAttributeKey.for_keyword("LeadflowQueue")
TASK_STATUS = SearchAttributeKey.for_keyword("LeadflowTaskStatus")
# when an open task's SLA breaches next (after the last breach: when it last did), so the inbox
# shows the time left from one listing
TASK_DUE = SearchAttributeKey.for_datetime("LeadflowTaskDue")
ALL = (LEAD_STATE, LEAD_SCORE, TASK_QUEUE, TASK_STATUS, TASK_DUE)
