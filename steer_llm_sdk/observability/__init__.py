"""Metrics for LLM calls: records, the collector, tracking, context and sinks.

Usable on its own around any SDK: nothing here imports the client, the providers or the
reliability layer.

Importing this package loads only ``instrument()``/``uninstrument()`` and the process-wide
state (fork and exit hooks): every other name below, and every submodule, is loaded on first
use, and the metrics core (collector, pipeline, sinks) when the default collector is first
needed. An application that only instruments pays for the core on its first measured call,
not at start-up.
"""

import sys
import types
import typing

from .._lazy import lazy_names as _lazy_names
from . import runtime
from .instrumentation import instrument, uninstrument

if typing.TYPE_CHECKING:
    from ._ids import new_request_id
    from .collector import CollectorStats, MetricsCollector, SinkStats
    from .config import MetricsConfig
    from .doctor import DoctorReport, Finding, doctor
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

#: Each public name loaded on first use -> the submodule defining it.
_LAZY = {
    "new_request_id": "_ids",
    "CollectorStats": "collector",
    "MetricsCollector": "collector",
    "SinkStats": "collector",
    "MetricsConfig": "config",
    "DoctorReport": "doctor",
    "Finding": "doctor",
    "doctor": "doctor",
    "configure": "lifecycle",
    "flush": "lifecycle",
    "get_collector": "lifecycle",
    "reset_after_fork": "lifecycle",
    "shutdown": "lifecycle",
    "shutdown_all": "lifecycle",
    "TrackedStream": "measure",
    "bind_context": "measure",
    "current_attributes": "measure",
    "current_metrics": "measure",
    "metrics_context": "measure",
    "track_request": "measure",
    "AgentMetrics": "models",
    "BaseMetrics": "models",
    "ErrorMetrics": "models",
    "ReliabilityMetrics": "models",
    "RequestMetrics": "models",
    "StreamingMetrics": "models",
    "UsageMetrics": "models",
}


#: Submodules reachable as attributes of the package without importing them first, as when
#: the package imported them (through the names above) eagerly.
_SUBMODULES = frozenset(
    {
        "_fields",
        "_ids",
        "_log",
        "_native",
        "_sanitize",
        "_signals",
        "collector",
        "config",
        "conventions",
        "filters",
        "instrumentation",
        "lifecycle",
        "measure",
        "models",
        "pipeline",
        "rollup",
        "runtime",
        "sampling",
        "sink",
        "sinks",
        "summary",
    }
)


def _default_collector() -> typing.Any:
    """The runtime's factory of the default collector until the lifecycle is loaded: loads
    it (which installs its own factory for later) and makes the default collector with it.
    Called by the runtime on first need, under its lock."""
    from . import lifecycle

    return lifecycle.new_default()


runtime.set_factory(_default_collector)


class _Package(types.ModuleType):
    """This package's module type. Loading a submodule binds it on the package under its
    name; ``doctor`` is both a submodule and the function of that name that the package
    exports, and the function keeps the name whenever the submodule is first loaded."""

    def __setattr__(self, name: str, value: typing.Any) -> None:
        if name == "doctor" and isinstance(value, types.ModuleType):
            value = value.doctor
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

# What dir() leaves out: this module's own machinery, not the package's.
_HIDDEN = frozenset(
    {"sys", "types", "typing", "_lazy_names", "_LAZY", "_SUBMODULES", "_HIDDEN", "_Package"}
    | {"__getattr__", "__dir__", "_default_collector"}
)
__getattr__, __dir__ = _lazy_names(__name__, globals(), _LAZY, _SUBMODULES, _HIDDEN)
