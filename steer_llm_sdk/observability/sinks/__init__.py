"""Sinks: where metric records go. See :mod:`.base` for the protocol.

``OTelMetricsSink`` loads the OpenTelemetry SDK on first use, ``PrometheusMetricsSink``
prometheus_client (extra ``[prometheus]``), ``StructlogMetricsSink`` structlog: the default
collector (an in-memory sink) loads none of them.
"""

from typing import Any

from ..sink import MetricsSink
from ..summary import MetricsSummary, ModelSummary
from .in_memory import InMemoryMetricsSink

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
    # These libraries take long to import (the OpenTelemetry SDK most): loaded only when
    # their sink is asked for.
    if name == "OTelMetricsSink":
        from .otlp import OTelMetricsSink

        globals()[name] = OTelMetricsSink
        return OTelMetricsSink
    if name == "PrometheusMetricsSink":
        from .prometheus import PrometheusMetricsSink

        globals()[name] = PrometheusMetricsSink
        return PrometheusMetricsSink
    if name == "StructlogMetricsSink":
        from .structlog import StructlogMetricsSink

        globals()[name] = StructlogMetricsSink
        return StructlogMetricsSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
