"""Sinks: where metric records go. See :mod:`.base` for the protocol."""

from ..summary import MetricsSummary, ModelSummary
from .base import MetricsSink
from .in_memory import InMemoryMetricsSink

__all__ = ["InMemoryMetricsSink", "MetricsSink", "MetricsSummary", "ModelSummary"]
