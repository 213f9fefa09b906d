"""Sinks: where metric records go. See :mod:`.base` for the protocol.

``OTelMetricsSink`` loads the OpenTelemetry SDK on first use, ``PrometheusMetricsSink``
prometheus_client (extra ``[prometheus]``).
"""

from typing import Any

from ..sink import MetricsSink
from ..summary import MetricsSummary, ModelSummary
from .in_memory import InMemoryMetricsSink
from .structlog import StructlogMetricsSink

__all__ = [
    "InMemoryMetricsSink",
    "MetricsSink",
    "MetricsSummary",
    "ModelSummary",
    "OTelMetricsSink",
    "PrometheusMetricsSink",
    "StructlogMetricsSink",
]


def __getattr__(name: str) -> Any:
    # The OpenTelemetry SDK takes ~100 ms to import: only when the sink is asked for.
    if name == "OTelMetricsSink":
        from .otlp import OTelMetricsSink

        globals()[name] = OTelMetricsSink
        return OTelMetricsSink
    if name == "PrometheusMetricsSink":
        from .prometheus import PrometheusMetricsSink

        globals()[name] = PrometheusMetricsSink
        return PrometheusMetricsSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
