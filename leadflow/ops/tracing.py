"""Traces: OpenTelemetry spans from the door (the API's request) through the Temporal client
(start, signal, update) into the workflows and their activities (the SDK's TracingInterceptor
carries the context in Temporal's headers). Exported by OTLP/HTTP when
OTEL_EXPORTER_OTLP_ENDPOINT is set (with the standard OTEL_* variables); off otherwise, and then
nothing is intercepted at all."""

from __future__ import annotations

import os
from typing import Any

_on = False


def configure(service: str) -> bool:
    """Turn tracing on for this process when OTEL_EXPORTER_OTLP_ENDPOINT says where to send it."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get(
        "OTEL_SERVICE_NAME", service)}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use(provider)
    return True


def use(provider: Any) -> None:
    """Trace into `provider` (a TracerProvider; tests give one that keeps spans in memory)."""
    global _on
    from opentelemetry import trace

    trace.set_tracer_provider(provider)
    _on = True


def interceptors() -> list[Any]:
    """The Temporal client's interceptors: the tracing one when tracing is on (a worker built on
    the client takes it from there)."""
    if not _on:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def off() -> None:
    """Stop intercepting new clients (a test's provider goes with its test)."""
    global _on
    _on = False
