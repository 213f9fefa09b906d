"""Metrics for LLM calls: records, the collector, tracking, context and sinks.

Usable on its own around any SDK: nothing here imports the client, the providers or the
reliability layer.
"""

from ._ids import new_request_id
from .collector import CollectorStats, MetricsCollector, SinkStats
from .config import MetricsConfig
from .doctor import DoctorReport, Finding, doctor
from .instrumentation import instrument, uninstrument
from .lifecycle import (
    configure,
    flush,
    get_collector,
    reset_after_fork,
    shutdown,
    shutdown_all,
)
from .measure import (
    TrackedStream,
    bind_context,
    current_attributes,
    current_metrics,
    metrics_context,
    track_request,
)
from .models import (
    AgentMetrics,
    BaseMetrics,
    ErrorMetrics,
    ReliabilityMetrics,
    RequestMetrics,
    StreamingMetrics,
    UsageMetrics,
)

__all__ = [
    "AgentMetrics",
    "BaseMetrics",
    "CollectorStats",
    "DoctorReport",
    "ErrorMetrics",
    "Finding",
    "MetricsCollector",
    "MetricsConfig",
    "ReliabilityMetrics",
    "RequestMetrics",
    "SinkStats",
    "StreamingMetrics",
    "TrackedStream",
    "UsageMetrics",
    "bind_context",
    "configure",
    "current_attributes",
    "current_metrics",
    "doctor",
    "flush",
    "get_collector",
    "instrument",
    "metrics_context",
    "new_request_id",
    "reset_after_fork",
    "shutdown",
    "shutdown_all",
    "track_request",
    "uninstrument",
]
