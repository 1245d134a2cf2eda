"""Prometheus metrics: Temporal's own SDK metrics and leadflow's, from one exporter per process.

The Temporal SDK's runtime serves its metrics on an address of its own (a socket the SDK owns,
path `/metrics`); leadflow's counters and histograms are made on the same runtime's meter so
that one scrape has both. Inside workflows and activities the SDK's own meters are used
(`workflow.metric_meter()` skips replays; both add namespace, task queue and type labels).
Labels never hold an e-mail, a name or a lead id: only types, states, rules, queues, statuses.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

# seconds: an evaluation takes well under a millisecond in the engine, a batch a few
EVALUATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]

_meter: MetricMeter | None = None  # this process's runtime's, for code outside workflows/activities
_bound: str | None = None  # where this process's runtime serves them


def runtime(bind: str) -> Runtime:
    """A Temporal runtime that serves Prometheus metrics at `bind` (host:port): create it before
    any client of the process, and give it to each."""
    global _meter, _bound
    _made.clear()
    made = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=bind, counters_total_suffix=True, durations_as_seconds=True,
        histogram_bucket_overrides={"leadflow_evaluation_seconds": EVALUATION_BUCKETS}),
        attach_service_name=False))
    _meter, _bound = made.metric_meter, bind
    return made


def try_runtime(bind: str) -> Runtime | None:
    """runtime(bind), or None (said in the log) when `bind` is empty or taken: a second worker on
    one machine with the default address runs on, without metrics of its own."""
    if not bind:
        return None
    try:
        return runtime(bind)
    except (ValueError, RuntimeError) as err:
        logging.getLogger("leadflow.metrics").warning(
            "no metrics from this process: %s (%s); give each process its own LEADFLOW_METRICS_ADDR",
            bind, err)
        return None


def bound() -> str | None:
    """host:port of this process's metrics, or None when it serves none."""
    return _bound


def loopback() -> str:
    """A free port on loopback, for a process whose metrics another route serves (the API's)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def meter() -> MetricMeter | None:
    return _meter


_made: dict[tuple[str, str], Any] = {}  # the process meter's metrics, made once each


def _metric(kind: str, name: str, description: str, on: MetricMeter | None) -> Any:
    """A metric of `on` (an activity's meter: made per call) or of the process's (made once)."""
    target = on or _meter
    if target is None:
        return None
    if on is None and (kind, name) in _made:
        return _made[kind, name]
    made: Any = (target.create_counter(name, description) if kind == "counter"
                 else target.create_gauge_float(name, description))
    if on is None:
        _made[kind, name] = made
    return made


def count(name: str, description: str, labels: Mapping[str, str], n: int = 1,
          on: MetricMeter | None = None) -> None:
    """Add to a counter of this process's meter (or `on`); nothing when metrics are off."""
    if n and (counter := _metric("counter", name, description, on)) is not None:
        counter.add(n, {k: str(v) for k, v in labels.items()})


def gauge(name: str, description: str, value: float, labels: Mapping[str, str]) -> None:
    if (made := _metric("gauge", name, description, None)) is not None:
        made.set(value, {k: str(v) for k, v in labels.items()})
