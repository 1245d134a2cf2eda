"""Traces: one sign-up through the API is one connected trace, from the HTTP request through
the Temporal client and the lead's workflow down to the activity that sends its welcome e-mail.
Spans are kept in memory here; in production OTEL_EXPORTER_OTLP_ENDPOINT sends them by OTLP."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from leadflow.ops import tracing
from tests.support.stack import Stack, until


def test_a_sign_up_through_the_api_is_one_trace_down_to_its_e_mail(tmp_path: Path, shared_server) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.use(provider)

    try:
        with Stack(tmp_path, queue="traces", server=shared_server) as stack:
            sent = stack.http("intake").post("/v1/events", json={"type": "signup",
                                                                 "lead": {"email": "tess@acme.example"}})
            (result,) = sent.json()["results"]
            assert result["status"] == "accepted"
            until(lambda: any(s.name == "RunActivity:send_email" for s in spans.get_finished_spans()))
    finally:
        tracing.off()
        provider.shutdown()
    finished = spans.get_finished_spans()
    (door,) = [s for s in finished if s.name.startswith("POST /v1/events") and s.parent is None]
    trace = [s for s in finished if s.context.trace_id == door.context.trace_id]
    names = {s.name for s in trace}
    for wanted in ("SignalWithStartWorkflow:LeadWorkflow", "RunWorkflow:LeadWorkflow",
                   "StartActivity:send_email", "RunActivity:send_email"):
        assert wanted in names, sorted(names)
    ids = {s.context.span_id for s in trace}
    assert all(s.parent is None or s.parent.span_id in ids for s in trace)  # connected, one root
    assert [s for s in trace if s.parent is None] == [door]
